"""A dfx-style project folder for a running emulator, so prep finds it as it finds a local dfx replica:
`--network local` reads the address from dfx.json, `--canister llama_cpp` the id from
.dfx/local/canister_ids.json, and identity.pem (the emulator's controller) goes to --pem or $PREP_PEM."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit


def write_project(folder: Path, url: str, canister_ids: dict[str, str], identity_pem: Path) -> Path:
    """Writes dfx.json (networks.local.bind, other keys of an existing one kept), the canister ids and
    identity.pem into `folder`; returns the PEM's path there."""
    folder.mkdir(parents=True, exist_ok=True)
    dfx_json = folder / "dfx.json"
    config = json.loads(dfx_json.read_text()) if dfx_json.is_file() else {}
    config.setdefault("networks", {})["local"] = {"bind": urlsplit(url).netloc, "type": "ephemeral"}
    dfx_json.write_text(json.dumps(config, indent=2) + "\n")
    ids = folder / ".dfx" / "local" / "canister_ids.json"
    ids.parent.mkdir(parents=True, exist_ok=True)
    ids.write_text(json.dumps({kind: {"local": cid} for kind, cid in canister_ids.items()}, indent=2) + "\n")
    pem = folder / "identity.pem"
    shutil.copyfile(identity_pem, pem)
    return pem
