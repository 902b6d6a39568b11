PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-installs only when the package's metadata or the pinned versions change.
INSTALLED := $(VENV)/.installed

.PHONY: install test test-slow ci demo

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(INSTALLED): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt torch torchvision
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
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
