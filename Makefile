SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
# checkov pins many packages of its own: it gets a venv of its own, never .venv.
TOOLS := .venv-tools
CHECKOV_VERSION := 3.3.30
CHECKOV_STAMP := $(TOOLS)/.checkov-$(CHECKOV_VERSION)

.PHONY: help install lint typecheck template checkov js checks test test-fast bench demo build deploy clean browser-deps

help:
	@echo "make demo    run a small training end to end on the embedded local stack"
	@echo "make test    lint, type-check, template checks and the test suite"
	@echo "make js      type-check, lint and unit-test the review page's scripts"
	@echo "make bench   benchmarks (figures, not pass/fail); BENCH=\"postprocess eval\" runs some"
	@echo "make build   sam build (no Docker, no local Python 3.13 needed)"

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

template: install
	$(VENV)/bin/cfn-lint template.yaml

$(CHECKOV_STAMP):
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check 'checkov==$(CHECKOV_VERSION)'
	@rm -f $(TOOLS)/.checkov-*; touch $(CHECKOV_STAMP)

# Skipped checks carry their reasons in template.yaml (Metadata: checkov: skip). --skip-download:
# no calls to the vendor's platform (CI has no network beyond the package registries).
checkov: $(CHECKOV_STAMP)
	$(TOOLS)/bin/checkov -f template.yaml --framework cloudformation --compact --quiet --skip-download

# The review page's scripts (functions/segpipe/ui): TypeScript checks their JSDoc types, eslint lints
# them, node's test runner runs the unit tests of their pure functions. The tools are pinned in
# tests/js/package-lock.json and installed there by `npm ci` (again whenever the lock file changes).
JS_DIR := tests/js
JS_STAMP := $(JS_DIR)/node_modules/.installed

$(JS_STAMP): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "make js needs node 20+ and npm (apt-get install nodejs npm)"; exit 1; }
	cd $(JS_DIR) && npm ci --no-audit --no-fund --prefer-offline
	@touch $(JS_STAMP)

js: $(JS_STAMP)
	cd $(JS_DIR) && npm run --silent typecheck && npm run --silent lint && npm test --silent

# The browser tests drive Debian's chromium (never a downloaded browser); install it when we can.
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian's chromium for the browser tests"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
				|| echo "chromium could not be installed: the browser tests will be skipped"; \
		else echo "no /usr/bin/chromium: the browser tests will be skipped (apt-get install chromium)"; fi; \
	fi

# The checks and the three installs they need (.venv, checkov's venv, the npm tools) run side by side;
# -Otarget keeps each one's output together.
checks: lint typecheck template checkov js browser-deps

# pytest runs with bytecode writes on, whatever the caller's PYTHONDONTWRITEBYTECODE: with it set, every
# process (each xdist worker, the local stacks, each training job) compiled this repository's modules
# again and pytest rewrote every test module again (6 s of CPU per collection alone). The caches go to
# __pycache__/ folders, which git ignores. Each xdist group (browser, local-stack, fuzz) is one unit of
# work that loadgroup hands out most tests first, so the two heavy groups start on different workers.
test:
	@$(MAKE) --no-print-directory -j4 -Otarget checks
	env -u PYTHONDONTWRITEBYTECODE $(VENV)/bin/pytest -n 2 --dist loadgroup --timeout 900

test-fast: install
	$(VENV)/bin/pytest -n 2 -m "not slow and not e2e and not browser"

bench: install
	$(PY) -m bench $(BENCH)

demo: install
	$(PY) -m segpipe_local.demo

build: 
	$(MAKE) -C infra build

deploy:
	$(MAKE) -C infra deploy

clean:
	rm -rf $(JS_DIR)/node_modules .aws-sam .pytest_cache .mypy_cache .ruff_cache bench/out
