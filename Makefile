# Two commands a newcomer needs: `make run` (Slipway on the embedded default) and `make test` (the whole suite).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install run test bench-ingest bench-api bench-worker bench-e2e bench-memory clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/slipway serve

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

bench-ingest: install
	$(PY) bench/ingest.py

bench-api: install
	$(PY) bench/api_at_size.py

bench-worker: install
	$(PY) bench/worker.py

bench-e2e: install
	$(PY) bench/e2e.py

bench-memory: install
	$(PY) bench/memory.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
