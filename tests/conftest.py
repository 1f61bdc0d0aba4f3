"""Shared pytest set-up. Each area keeps its fixtures in tests/fixtures_<area>.py, listed here."""

import os

# huggingface_hub freezes HF_ENDPOINT when it is first imported and may send a request there on its own
# (the agent-harness registry). Point it at a closed loopback port before anything imports it, so no
# test ever sends traffic off this machine; hubsim fixtures set the real test endpoint per test.
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"

pytest_plugins: list[str] = [
    "tests.fixtures_hub",
    "tests.fixtures_ic",
    "tests.fixtures_icsim",
    "tests.fixtures_models",
    "tests.fixtures_network",
    "tests.fixtures_upload",
    "tests.fixtures_run",
]
