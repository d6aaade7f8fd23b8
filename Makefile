# Two commands do all set-up on a fresh machine: `make demo` (the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is installed first, pinned, so that no extra pulls a multi-GB CUDA build on CPU machines.
TORCH ?= torch==2.13.0
EXTRAS ?= all,test

.PHONY: demo test test-portability test-wheel typecheck bench results clean

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

# The package ships py.typed: its annotations are checked (settings in pyproject.toml [tool.mypy]).
typecheck: $(BIN)/.installed
	$(BIN)/mypy

# Decoded bits must not depend on the machine: the portability tests (goldens, determinism, ties)
# again under two OpenBLAS kernels and with numpy's AVX2 loops switched off; they test 1 and 2 threads.
test-portability: $(BIN)/.installed
	for kernel in Prescott Haswell; do \
		OPENBLAS_CORETYPE=$$kernel $(BIN)/python -m pytest -q -p no:cacheprovider -m portability || exit 1; \
	done
	NPY_DISABLE_CPU_FEATURES=X86_V3 $(BIN)/python -m pytest -q -p no:cacheprovider -m portability

# The documented pip path (docs/EMBED.md) from a built wheel in a clean venv, then the installed CLI.
WHEEL_VENV := build/wheel-venv
test-wheel:
	rm -rf build/dist $(WHEEL_VENV)
	$(PY) -m pip wheel -q --no-deps -w build/dist .
	$(PY) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install -q --upgrade pip
	$(WHEEL_VENV)/bin/pip install -q $(TORCH)
	$(WHEEL_VENV)/bin/pip install -q "$$(ls build/dist/semzip-*.whl)[clip]"
	$(WHEEL_VENV)/bin/pip install -q --no-deps "open_clip_torch>=3.3,<4"
	$(WHEEL_VENV)/bin/python tests/smoke_wheel.py

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_core.py

# The README's Results table and plot (about an hour on 2 cores): the baselines (f16, int8, sign,
# pq M=32/16/8) and these, 3 training seeds each; out/results/headline.md is the table.
RESULTS_CODECS := pq:M=4,K=256,opq=1 pq:M=64,K=16,opq=1,raw=1 \
	bq:D=32,b=1 bq:D=64,b=1 bq:D=128,b=1 bq:D=256,b=1 \
	rq:M=4,K=256,beam=8 rq:M=8,K=256,beam=8 rq:M=16,K=256,beam=8 rq:M=32,K=256,beam=8 \
	pqvae:dim=16,K=32,grid=2,C=16,H=64,blocks=1,coarse=12 pqvae:dim=8,K=64,grid=2,C=16,H=64,blocks=1,coarse=12 \
	pqvae:dim=8,K=64,grid=2,C=16,H=64,blocks=1,coarse=12,bits=88 \
	pqvae:dim=8,K=64,grid=2,C=16,H=64,blocks=1,coarse=12,bits=172 \
	smic:atoms=1024,k=1,coef=0,dbits=1 \
	pq:M=2,K=256,opq=1+bq:D=32,b=1 bq:D=48,b=1+rq:M=2,K=256,beam=8 \
	pq:M=8,K=256,opq=1+bq:D=128,b=1 bq:D=192,b=1+rq:M=2,K=256,beam=8 \
	coarse:bits=12 transform:bits=160
results: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_eval.py --out out/results $(foreach c,$(RESULTS_CODECS),--codecs "$(c)")

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build
