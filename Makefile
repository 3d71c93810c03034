# Quick start:  make demo  (set up .venv and run the demo job)
#               make test  (set up .venv with test dependencies and run the tests)
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.colliderlab-installed

.PHONY: demo test venv bench lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(BIN)/colliderlab demo -o demo-output

test: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/ruff check src tests

bench: $(STAMP)
	$(BIN)/colliderlab bench generate --process ttbar --events 400 --json

clean:
	rm -rf $(VENV) demo-output .pytest_cache
