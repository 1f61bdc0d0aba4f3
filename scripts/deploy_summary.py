"""The Markdown table of a deploy (scripts/deploy.sh): one row per recipe and canister, from the JSON
lines that `prep upload --bundle --json` and `prep verify --canister --json` wrote into RESULTS_DIR.

    python scripts/deploy_summary.py RESULTS_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

VERDICTS = {"proven": "every byte", "consistent": "consistent (journal; bytes not readable)"}


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def outcome(events: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str | None]:
    """The command's result event, and its error message when it failed."""
    result = next((e for e in reversed(events) if e.get("event") == "result"), None)
    error = next((e.get("message") for e in reversed(events) if e.get("event") == "error"), None)
    if result is None and error is None:
        error = "no result (the command did not finish)"
    return result, error


def cell(text: object, limit: int = 80) -> str:
    value = " ".join(str(text).split())
    value = value if len(value) <= limit else value[: limit - 1] + "…"
    return value.replace("|", "\\|")


def row(results: Path, recipe: str) -> list[str]:
    canister_file = results / f"{recipe}.canister"
    canister = canister_file.read_text().strip() if canister_file.is_file() else "?"
    upload, upload_error = outcome(read_events(results / f"{recipe}.upload.jsonl"))
    if upload is None:
        return [recipe, canister, "", "", "", "", f"**failed**: {cell(upload_error, 200)}"]
    total = sum(int(a["size"]) for a in upload.get("artifacts", {}).values())
    stage = next((s for s in upload.get("stages", []) if s.get("stage") == "upload"), {})
    sent = int(stage.get("data", {}).get("bytes_sent", 0))
    rate = float(stage.get("data", {}).get("mb_per_s", 0.0))
    verify, verify_error = outcome(read_events(results / f"{recipe}.verify.jsonl"))
    if verify_error is not None:
        verified = f"**no**: {cell(verify_error, 200)}"
    else:
        assert verify is not None
        verdicts = [f"{f['file']}: {VERDICTS.get(f['verdict'], f['verdict'])}" for f in verify["files"]]
        verified = "yes (" + "; ".join(verdicts) + ")"
    smoke = upload.get("smoke") or {}
    answer = cell(smoke.get("text", ""))
    return [
        recipe,
        canister,
        f"{total:,}",
        f"{sent:,}",
        f"{rate:.2f}",
        verified,
        f"`{answer}`" if answer else "",
    ]


def summary(results: Path) -> str:
    recipes = sorted(p.name[: -len(".canister")] for p in results.glob("*.canister"))
    header = ["recipe", "canister", "bytes", "sent", "MB/s", "sha256 verified", "smoke answer"]
    lines = ["## Deploy", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row(results, recipe)) + " |" for recipe in recipes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.stdout.write(summary(Path(sys.argv[1])))
