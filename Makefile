# Two commands on a fresh machine with Python 3.11+:  make run   and   make test
PYTHON ?= python3
VENV ?= .venv
CORES ?= 4
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: run test venv lock demo bench clean

# The virtual environment is built from the lock file only; the package itself is
# installed without touching the resolver.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

venv: $(VENV)/.installed

run: venv
	$(BIN)/snakemake --cores $(CORES)

test: venv
	$(BIN)/python -m pytest --durations=25

# Re-resolve the direct dependencies (pyproject.toml) into exact pins.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip setuptools
	.lock-venv/bin/python -m pip install --quiet -e '.[test]'
	( echo "# Exact versions of every dependency, from 'make lock' on Python 3.11 (Linux x86_64)."; \
	  .lock-venv/bin/python -m pip freeze --all --exclude-editable ) > requirements.lock
	rm -rf .lock-venv

demo: venv
	$(BIN)/python -m ipdpool.demo --out resources/demo

bench: venv
	$(BIN)/python bench/bench_demo_generation.py
	$(BIN)/python bench/bench_harmonize.py
	$(BIN)/snakemake --cores $(CORES) results/harmonized/pooled.parquet
	$(BIN)/python bench/bench_models.py
	$(BIN)/python bench/bench_workflow.py

clean:
	rm -rf results logs benchmarks .snakemake
