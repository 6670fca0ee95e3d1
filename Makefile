# `make test` and `make demo` build everything they need from scratch into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	rm -rf runs/demo-txn
	$(BIN)/sysevolve run txn_scheduling --iterations 200 --out runs/demo-txn --seed 0 --offline
	$(BIN)/sysevolve status runs/demo-txn

bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/problems.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
