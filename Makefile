# The two commands that matter: `make run` and `make test`. Both set everything up from scratch.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app app
POSTGRES_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: setup run photo-keys test test-postgres bench loadtest screenshots clean

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

setup: $(VENV)/.installed

# The example with a random secret_key in place of its placeholder (which `flask serve` refuses),
# readable by its owner only: it holds the account's secrets.
config.toml:
	@key=$$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n'); \
	photo=$$(head -c32 /dev/urandom | base64); lookup=$$(head -c32 /dev/urandom | base64); \
	(umask 077; sed -e "s/^secret_key = \"change-me\"$$/secret_key = \"$$key\"/" \
	    -e "s|^keys = {}$$|keys = { 1 = \"$$photo\" }|" -e "s|^active_key = \"\"$$|active_key = \"1\"|" \
	    -e "s|^lookup_key = \"\"$$|lookup_key = \"$$lookup\"|" config.example.toml > config.toml.tmp) && \
	grep -q "^secret_key = \"$$key\"$$" config.toml.tmp && grep -q "^active_key = \"1\"$$" config.toml.tmp && \
	mv config.toml.tmp config.toml
	@echo "config.toml written with a random secret_key and photo encryption keys"

# A config.toml made before photos were encrypted gets a [privacy] section with fresh keys (once).
photo-keys: config.toml
	@grep -q '^\[privacy\]' config.toml || { printf '\n[privacy]\nkeys = { 1 = "%s" }\nactive_key = "1"\nlookup_key = "%s"\n' \
	    "$$(head -c32 /dev/urandom | base64)" "$$(head -c32 /dev/urandom | base64)" >> config.toml && \
	    echo "config.toml: added [privacy] photo encryption keys"; }
	@# One made before transcripts were sealed has keys but no lookup_key, without which `flask serve` refuses.
	@grep -q '^lookup_key = "[^"]' config.toml || { lookup=$$(head -c32 /dev/urandom | base64); \
	    (umask 077; sed -e "s|^lookup_key = \"\"$$|lookup_key = \"$$lookup\"|" config.toml > config.toml.tmp) && \
	    { grep -q '^lookup_key = "[^"]' config.toml.tmp || sed -i "/^\[privacy\]$$/a lookup_key = \"$$lookup\"" config.toml.tmp; } && \
	    mv config.toml.tmp config.toml && echo "config.toml: added [privacy] lookup_key"; }

run: setup config.toml photo-keys
	$(FLASK) db upgrade
	$(FLASK) demo seed
	@# The staff console's demo admin: a new random password on every start, printed once.
	$(FLASK) users demo-admin
	@echo
	@echo "Chat with the bot in another terminal:  $(BIN)/flask --app standins.demo chat"
	@echo
	@# The huey consumer (notifications, periodic jobs) runs beside the web server and stops with it.
	$(FLASK) jobs work & worker=$$!; trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; $(FLASK) serve

test: setup
	$(BIN)/python -m pytest -q

# The browser tests again, refreshing the README's screenshots in docs/screenshots.
screenshots: setup
	COLLECTOR_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/browser

# The database-facing tests again on PostgreSQL (skipped with a reason when it is not reachable).
test-postgres: setup
	TEST_DATABASE_URL=$(POSTGRES_TEST_URL) $(BIN)/python -m pytest -q --ignore=tests/photo

# The webhook bench again on PostgreSQL + Redis when BENCH_POSTGRES_URL names a scratch database.
BENCH_POSTGRES_URL ?=
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/14
bench: setup
	$(BIN)/python bench/webhook_bench.py
	$(if $(BENCH_POSTGRES_URL),$(BIN)/python bench/webhook_bench.py --database-url $(BENCH_POSTGRES_URL) --redis-url $(BENCH_REDIS_URL))
	$(if $(shell command -v valgrind),$(BIN)/python bench/instructions_bench.py,@echo "instructions_bench skipped: valgrind is not installed (apt-get install valgrind)")
	$(BIN)/python bench/photo_bench.py
	$(BIN)/python bench/outbox_bench.py
	$(BIN)/python bench/overview_bench.py --candidates 50000
	$(BIN)/python bench/handover_bench.py --photos 20000
	$(BIN)/python bench/reminders_bench.py --recipients 30000 --send-seconds 30
	$(BIN)/python bench/roster_match_bench.py --graduates 20000
	$(if $(BENCH_POSTGRES_URL),$(BIN)/python bench/roster_match_bench.py --graduates 20000 --database-url $(BENCH_POSTGRES_URL))
	$(BIN)/python bench/sealing_bench.py --graduates 50000
	$(if $(BENCH_POSTGRES_URL),$(BIN)/python bench/sealing_bench.py --graduates 50000 --database-url $(BENCH_POSTGRES_URL))

# Issue 15's cohort through the production profile: PostgreSQL (a scratch database: it is EMPTIED) + Redis,
# gunicorn with 3 workers, 2 consumers, 5 000 candidates 64 at a time, staff reviewing, faults mid-run.
# Issue 8's smaller runs: make loadtest LOADTEST_ARGS="--profiles sqlite postgres".
LOADTEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/loadtest
LOADTEST_REDIS_URL ?= redis://127.0.0.1:6379/15
loadtest: setup
	$(BIN)/python -m loadtest --postgres-url $(LOADTEST_POSTGRES_URL) --redis-url $(LOADTEST_REDIS_URL) $(LOADTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
