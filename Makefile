# The two set-up commands are `make run` and `make test`; both install what they need.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test bench services clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

# The demo, then every stage in one process, on the embedded default (in-memory broker, SQLite).
run: $(VENV)/.installed
	env -u GOVBUS_BROKER_URL -u GOVBUS_DATABASE_URL $(BIN)/govbus demo
	env -u GOVBUS_BROKER_URL -u GOVBUS_DATABASE_URL -u GOVBUS_ROUTES $(BIN)/govbus serve

# RabbitMQ (with its management API, for a vhost per test) and PostgreSQL must be up.
services:
	bash tests/ensure-services.sh

test: $(VENV)/.installed services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed services
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var *.egg-info .pytest_cache
