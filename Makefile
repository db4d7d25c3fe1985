# Every target sets up .venv itself, so each one works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test lint stress bench docs docs-serve build-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

## make demo: OAuth 2.0 played by its three parties: the issuer, example APIs, the clients.
demo: setup
	$(BIN)/python examples/demo.py

## make test: the whole suite (unit, integration against real servers, conformance).
test: setup
	$(BIN)/python -m pytest tests --ignore=tests/stress -p no:cacheprovider

## make lint: ruff and mypy --strict.
lint: setup
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src
	$(BIN)/mypy

## make stress: fault injection, load and soak (bounded; CI runs it).
stress: setup
	$(BIN)/python -m pytest tests/stress -p no:cacheprovider

## make docs: build the documentation site into site/ (strict: a broken link or reference fails).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

## make docs-serve: serve the site on http://127.0.0.1:8000 while editing docs/.
docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

## make build-smoke: build the sdist and wheel, install each in a fresh venv, smoke-test it.
build-smoke: setup
	bash .ci/build-smoke $(BIN)/python

## make bench: benchmarks; writes benchmarks/RESULTS.md (uses wrk when installed).
bench: setup
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist site
