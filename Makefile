# esafety: `make run` starts the product on embedded defaults; `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERBEROS_STAMP := $(VENV)/.kerberos-installed
UI_PACKAGES := admin_api/web/ui_packages
UI_VENDOR := admin_api/web/static/vendor

.PHONY: run test lint typecheck pytest bench system-deps run-deps test-deps ui-vendor clean

$(STAMP): pyproject.toml setup.py categories/_urlfast.c
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "esafety needs Python 3.11 (mitmproxy 11.0.2)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# System packages, installed with apt-get when run as root (else named, for you to install).
# The product needs only redis-server (the embedded store; Debian's package brings redis-cli,
# which the Redis Cluster test uses to join its nodes). The tests also use Chromium (the UI and
# extension tests, through Playwright), Node.js (the extension's unit tests, a PAC check) and
# poppler-utils (the quarterly report PDF test reads its text and pages).
APT_INSTALL = \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "please install:$$missing (e.g. sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

run-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	$(APT_INSTALL)

test-deps: run-deps
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v pdftotext >/dev/null || missing="$$missing poppler-utils"; \
	command -v radclient >/dev/null || missing="$$missing freeradius-utils"; \
	command -v krb5kdc >/dev/null || missing="$$missing krb5-kdc krb5-admin-server"; \
	command -v kinit >/dev/null || missing="$$missing krb5-user"; \
	command -v krb5-config >/dev/null || missing="$$missing libkrb5-dev"; \
	command -v slapd >/dev/null || missing="$$missing slapd"; \
	command -v ldapadd >/dev/null || missing="$$missing ldap-utils"; \
	$(APT_INSTALL)

# Kerberos proxy sign-in's Python packages build against the system's MIT Kerberos.
$(KERBEROS_STAMP): $(STAMP) pyproject.toml | test-deps
	$(BIN)/pip install --quiet -e '.[kerberos]'
	@touch $(KERBEROS_STAMP)

system-deps: run-deps test-deps

# The admin UI's browser libraries (Chart.js), copied where aiohttp serves them
# (/static/vendor/): the exact npm tarballs the lock file names, checked against its sha512
# integrity, fetched by a standard-library Python step (no npm needed). Not committed.
$(UI_VENDOR)/chart.umd.min.js: $(UI_PACKAGES)/package-lock.json esafety/ui_vendor.py
	$(PYTHON) -m esafety.ui_vendor

ui-vendor: $(UI_VENDOR)/chart.umd.min.js

run: $(STAMP) run-deps ui-vendor
	$(BIN)/esafety up

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP) $(KERBEROS_STAMP)
	$(BIN)/mypy

# Two workers: most tests wait on real processes; each file runs whole on one worker, and the
# browser tests share one (tests/conftest.py).
pytest: $(STAMP) test-deps $(KERBEROS_STAMP) ui-vendor
	$(BIN)/pytest -q -n 2 --dist loadgroup

test: lint typecheck pytest extension-test

# The browser extension's logic (plain ES modules), with Node's built-in test runner.
extension-test: test-deps
	node --test extension/

bench: $(STAMP) run-deps
	$(BIN)/python bench/matcher.py

# Proxy throughput/latency/CPU against bare mitmdump, squid and e2guardian (a benchmark, not a
# test); needs wrk, hey, nginx-light (and squid, e2guardian for the side-by-side figures).
.PHONY: bench-proxy
bench-proxy: $(STAMP) run-deps
	$(BIN)/python bench/proxy.py --json

# Longer reliability runs than `make test` allows: Redis down for 60 s under load, repeated
# worker kills. Prints the same security figures as the tests.
.PHONY: soak
soak: $(STAMP) run-deps
	ESAFETY_OUTAGE_SECONDS=60 $(BIN)/pytest -q -p no:cacheprovider \
	  tests/security/test_security_outages.py tests/deployment/test_deploy_workers.py -k "under_load or killing"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache artifacts $(UI_VENDOR) $(UI_PACKAGES)/node_modules
