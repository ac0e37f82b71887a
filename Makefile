# The two commands that matter: `make run` and `make test`. Both set everything up from scratch.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app app
POSTGRES_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: setup run test test-postgres bench clean

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

setup: $(VENV)/.installed

config.toml:
	cp config.example.toml config.toml

run: setup config.toml
	$(FLASK) db upgrade
	$(FLASK) demo seed
	@# The staff console's demo admin: a new random password on every start, printed once.
	$(FLASK) users demo-admin
	@echo
	@echo "Chat with the bot in another terminal:  $(FLASK) chat"
	@echo
	@# The huey consumer (notifications, periodic jobs) runs beside the web server and stops with it.
	$(FLASK) jobs work & worker=$$!; trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; $(FLASK) serve

test: setup
	$(BIN)/python -m pytest -q

# The database-facing tests again on PostgreSQL (skipped with a reason when it is not reachable).
test-postgres: setup
	TEST_DATABASE_URL=$(POSTGRES_TEST_URL) $(BIN)/python -m pytest -q --ignore=tests/photo

bench: setup
	$(BIN)/python bench/webhook_bench.py
	$(BIN)/python bench/photo_bench.py
	$(BIN)/python bench/outbox_bench.py

clean:
	rm -rf $(VENV) var .pytest_cache
