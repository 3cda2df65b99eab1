# Two commands on a fresh machine: `make demo` and `make test`.
# Both (re)create .venv when pyproject.toml or a lock file is newer than the last install,
# installing exactly the versions in requirements.lock (every file checked against its hash).
# After changing dependencies in pyproject.toml, run `make lock` and commit the lock files.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEERS := $(VENV)/peers
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test
LOCK := requirements.lock
PEERS_LOCK := requirements-peers.lock
LOCK_VENV := .venv-lock
PIP_COMPILE := $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links

CATALOG := server/translations
CATALOGS := $(patsubst %.po,%.mo,$(wildcard $(CATALOG)/*/LC_MESSAGES/messages.po))

.PHONY: demo test test-postgres bench lint clean chromium catalog translations lock

$(STAMP): pyproject.toml $(LOCK) $(PEERS_LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	# python-hl7 is an independent test peer; its import name `hl7` is ours too,
	# so it lives apart and tests load it in a subprocess with PYTHONPATH.
	$(BIN)/python -m pip install --quiet --upgrade --require-hashes --target $(PEERS)/python-hl7 -r $(PEERS_LOCK)
	touch $@

# Re-resolve every dependency (runtime, dev extra and the build backend) to its newest allowed version,
# with hashes; the project itself is then built with the locked setuptools (no unpinned build isolation).
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_VENV) && \
	  $(LOCK_VENV)/bin/python -m pip install --quiet pip-tools; }
	$(PIP_COMPILE) --extra dev --all-build-deps -o $(LOCK) pyproject.toml
	$(PIP_COMPILE) -o $(PEERS_LOCK) requirements-peers.in

demo: $(STAMP) translations
	$(BIN)/frontdesk demo

test: $(STAMP) translations chromium
	$(BIN)/pytest

# One message catalog for the product. `make catalog` re-extracts the texts and merges them into
# each language's .po; the compiled .mo files are built here, at install, and never committed.
translations: $(CATALOGS)

$(CATALOG)/%/LC_MESSAGES/messages.mo: $(CATALOG)/%/LC_MESSAGES/messages.po $(STAMP)
	$(BIN)/pybabel compile --statistics -d $(CATALOG) -l $*

catalog: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg --no-location --omit-header -o $(CATALOG)/messages.pot .
	$(BIN)/pybabel update --no-fuzzy-matching -i $(CATALOG)/messages.pot -d $(CATALOG)

# End-to-end tests drive the system Chromium (Playwright cannot download its own
# browser here). As root, install Debian's package when it is missing; otherwise
# say exactly what to install.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "The end-to-end tests need Chromium: run 'sudo apt-get install chromium' (Debian/Ubuntu)."; exit 1; \
	  fi; }

test-postgres: $(STAMP) translations chromium
	FRONTDESK_TEST_DATABASE_URL=$(PG_URL) $(BIN)/pytest -m postgres

bench: $(STAMP) translations
	set -e; for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script; done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(LOCK_VENV) instance .pytest_cache .hypothesis .mypy_cache .ruff_cache
