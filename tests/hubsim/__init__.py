"""A Hugging Face Hub emulator for tests: the HTTP API subset huggingface_hub uses to download files."""

from tests.hubsim.repos import HubFile, HubRepo
from tests.hubsim.server import HubSim

__all__ = ["HubFile", "HubRepo", "HubSim"]
