"""Fetch from Hugging Face (and plain URLs) with sha256 verification and lock files."""

from pipeline.hub.fetch import (
    FetchedFile,
    FetchResult,
    LockMismatch,
    adhoc_name,
    fetch_recipe,
    fetch_repo,
    resolve_lock,
)
from pipeline.hub.hf import HubUnreachable

__all__ = [
    "FetchResult",
    "FetchedFile",
    "HubUnreachable",
    "LockMismatch",
    "adhoc_name",
    "fetch_recipe",
    "fetch_repo",
    "resolve_lock",
]
