# Two commands do all set-up on a fresh machine: `make demo` (the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is installed first, pinned, so that no extra pulls a multi-GB CUDA build on CPU machines.
TORCH ?= torch==2.13.0
EXTRAS ?= all,test

.PHONY: demo test bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	# open_clip without its torchvision/timm requirements (see docs/EMBED.md)
	$(BIN)/pip install -q --no-deps "open_clip_torch==3.3.0"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/semzip demo

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_core.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
