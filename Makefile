# The two commands a new user runs (see README): `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Install everything, load the demo ledger into the SQLite default store, serve the API.
run: $(STAMP)
	$(BIN)/arledger demo
	$(BIN)/arledger serve

## Install everything and run the whole test suite (SQLite, PostgreSQL, the Kafka broker).
test: $(STAMP)
	$(BIN)/pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .arledger-data
