# Operator targets. `make run` and `make test` create the virtual environment on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test migrate standin-image lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is required (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m dartcloud serve

migrate: $(STAMP)
	$(BIN)/python -m dartcloud migrate

test: $(STAMP) standin-image
	$(BIN)/python -m pytest

standin-image:
	sh images/standin/build.sh

lint: $(STAMP)
	$(BIN)/ruff check platform tests bench

bench: $(STAMP) standin-image
	$(BIN)/python bench/invoke.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
