PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install test demo

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[dev]"

test: install
	$(BIN)/python -m pytest

demo: install
	$(BIN)/explainprune demo
