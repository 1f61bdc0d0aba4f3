"""prep: take a language model from Hugging Face to a working LLM canister on the Internet Computer."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ic-model-prep")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
