"""Which replica to talk to (`--network local|ic|URL`) and which canister (`--canister ID|NAME`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from icp_principal import Principal

from pipeline.errors import PrepError, UsageError

MAINNET_URL = "https://icp-api.io"
MAINNET_HOSTS = frozenset({"icp-api.io", "ic0.app", "icp0.io"})
LOCAL_DEFAULT_URL = "http://127.0.0.1:4943"


@dataclass(frozen=True)
class Network:
    """`is_mainnet` decides the root key: built in for mainnet, fetched from /api/v2/status otherwise."""

    name: str
    url: str
    is_mainnet: bool


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest folder holding dfx.json, looking upwards from `start` (default: the current folder)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dfx.json").is_file():
            return folder
    return here


def resolve_network(network: str, url: str | None = None, project_dir: Path | None = None) -> Network:
    if network.startswith(("http://", "https://")):
        if url:
            raise UsageError(f"--network {network} is already a URL; drop --url {url}")
        return _network_from_url(network, network)
    if network == "ic":
        return Network("ic", _checked_url(url) if url else MAINNET_URL, is_mainnet=True)
    if url:
        return Network(network, _checked_url(url), is_mainnet=False)
    project = project_dir or find_project_dir()
    networks = _dfx_networks(project)
    if network == "local":
        bind = networks.get("local", {}).get("bind")
        return Network(
            "local", _checked_url(f"http://{bind}") if bind else LOCAL_DEFAULT_URL, is_mainnet=False
        )
    providers = networks.get(network, {}).get("providers") or []
    if providers:
        return _network_from_url(network, str(providers[0]))
    raise UsageError(
        f"unknown network '{network}'",
        hint="use --network local, --network ic or --network http(s)://HOST:PORT"
        + (f"; dfx.json at {project} defines: {', '.join(sorted(networks))}" if networks else ""),
    )


def _network_from_url(name: str, url: str) -> Network:
    checked = _checked_url(url)
    return Network(name, checked, is_mainnet=urlsplit(checked).hostname in MAINNET_HOSTS)


def _checked_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"not a replica URL: '{url}'", hint="expected http(s)://HOST[:PORT]")
    return url.rstrip("/")


def _dfx_networks(project: Path) -> dict[str, dict]:
    dfx_json = project / "dfx.json"
    if not dfx_json.is_file():
        return {}
    try:
        networks = json.loads(dfx_json.read_text()).get("networks") or {}
    except (ValueError, OSError) as err:
        raise PrepError(f"cannot read {dfx_json}: {err}") from None
    return {name: value for name, value in networks.items() if isinstance(value, dict)}


def looks_like_principal(text: str) -> bool:
    groups = text.split("-")
    return len(groups) > 1 and all(0 < len(g) <= 5 and g.isalnum() for g in groups)


def resolve_canister(text: str, network: Network, project_dir: Path | None = None) -> str:
    """A canister id in canonical text form, from an id or a name in the project's canister_ids.json."""
    try:
        return Principal.from_str(text).to_str()
    except ValueError as err:
        principal_error = str(err)
    project = project_dir or find_project_dir()
    ids_file, key = _canister_ids_location(project, network)
    known = _read_canister_ids(ids_file, key)
    if text in known:
        return Principal.from_str(known[text]).to_str()
    if looks_like_principal(text):
        raise UsageError(f"'{text}' is not a valid canister id ({principal_error})", hint="check for a typo")
    found = f"names there: {', '.join(sorted(known))}" if known else "no canisters there"
    raise UsageError(
        f"unknown canister '{text}' on network '{network.name}': looked in {ids_file} ({found})",
        hint="pass the canister id (principal) instead, or run from the dfx project folder",
    )


def _canister_ids_location(project: Path, network: Network) -> tuple[Path, str]:
    if network.is_mainnet:
        return project / "canister_ids.json", "ic"
    name = network.name if not network.name.startswith(("http://", "https://")) else "local"
    return project / ".dfx" / name / "canister_ids.json", name


def _read_canister_ids(path: Path, network_key: str) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError) as err:
        raise PrepError(f"cannot read {path}: {err}") from None
    return {
        name: ids[network_key]
        for name, ids in data.items()
        if isinstance(ids, dict) and isinstance(ids.get(network_key), str)
    }
