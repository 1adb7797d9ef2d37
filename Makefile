# One command each: `make run` (the worker on embedded defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= .data
export DAGSTER_HOME ?= $(abspath $(DATA))/dagster_home

.PHONY: install run test test-fast lint typecheck lock redis clean bench-delivery image

install: $(VENV)/.installed render_assets_tests/node/node_modules/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The lock pins every package, transitive ones included, so installs a month apart agree.
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev,deploy]'
	touch $@

render_assets_tests/node/node_modules/.installed: render_assets_tests/node/package-lock.json
	cd render_assets_tests/node && npm ci --silent --no-audit --no-fund
	touch $@

# Regenerate requirements.lock from a fresh resolve of pyproject.toml (then review the diff).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip && .lock-venv/bin/pip install --quiet -e '.[dev,deploy]'
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^render.assets' > requirements.lock
	rm -rf .lock-venv

redis:
	@redis-cli -u $${REDIS_URL:-redis://127.0.0.1:6379/0} ping >/dev/null 2>&1 || \
		redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no

# The worker on embedded defaults: Redis, SQLite and local files under .data/, the local provider.
# The Dagster UI is at http://127.0.0.1:3000 with the example jobs materializing; the progress
# server (live progress over SSE, the demo page) at http://127.0.0.1:8000 stops with it. The code
# server is a process of its own (as in production), so the daemon does not restart it every
# minute; the UI's "Reload" reloads it, and run workers pick up edited code by themselves.
CODE_SERVER_PORT ?= 4266
run: install redis
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/render-assets db upgrade
	$(BIN)/render-assets enqueue examples/*.json
	$(BIN)/render-assets serve --host 127.0.0.1 --port 8000 & server=$$!; \
	$(BIN)/dagster code-server start -h 127.0.0.1 -p $(CODE_SERVER_PORT) -m render_assets.orchestration.definitions \
		--location-name render_assets & code=$$!; \
	trap "kill $$server $$code 2>/dev/null" EXIT; \
	until $(BIN)/dagster api grpc-health-check -h 127.0.0.1 -p $(CODE_SERVER_PORT) >/dev/null 2>&1; do \
		kill -0 $$code 2>/dev/null || exit 1; sleep 0.5; done; \
	CODE_SERVER_PORT=$(CODE_SERVER_PORT) $(BIN)/dagster dev -w workspace.code-server.yaml -h 127.0.0.1 -p 3000

# Two parts: the fast tests on two workers, then the end-to-end tests in one process, where
# they share one Dagster daemon (pytest-xdist's grouping cannot be relied on for that).
test: install redis
	$(BIN)/pytest -n 2 -m "not e2e"
	$(BIN)/pytest -m e2e --durations=10

lint: install
	$(BIN)/ruff check render_assets render_assets_tests
	$(BIN)/ruff format --check render_assets render_assets_tests

# Time and peak memory of delivering a 4096x4096 render (variants + upload), local and GCS emulator.
bench-delivery: install
	$(BIN)/python -m render_assets.bench.delivery
bench-phash: install ; $(BIN)/python -m render_assets.bench.phash_lookup  # lookup p50/p95 at 10k, 100k, 1M hashes (PostgreSQL)
bench-progress: install ; $(BIN)/python -m render_assets.bench.progress_events  # publisher cost; SSE fan-out to 1/50/200 clients
bench-poison: install ; $(BIN)/python -m render_assets_tests.benchmarks.poisoned_images  # peak RSS refusing each poisoned provider reply vs decoding valid 4K ones, a fresh process each (~4 min)
bench: install redis ; @$(BIN)/render-assets bench --out $(DATA)/bench $(BENCH_ARGS)  # the real stack under the issue's scenarios, dagster.yaml and deploy/dagster.production.yaml side by side: JSON on stdout, bench-report.{json,html} in $(DATA)/bench (BENCH_ARGS=--quick for a smoke run)

# The image every role runs in (Dockerfile). On a machine without a container registry the base is
# built from Debian's packages (deploy/docker/base-image.sh, once); elsewhere pass
# BASE_IMAGE=python:3.11-slim-bookworm.
IMAGE ?= render-assets:latest
BASE_IMAGE ?= render-assets-base:bookworm
image: install
	deploy/docker/build-image.sh $(IMAGE) $(BASE_IMAGE) $(abspath $(BIN))/pip

typecheck: install
	$(BIN)/mypy

clean:
	rm -rf $(DATA) build .pytest_cache .mypy_cache .ruff_cache
