# Two commands set everything up on a fresh machine (Python >= 3.11 and the package registries):
#   make demo   installs into .venv and screens the built-in synthetic sample population for PROMIS-MDA5,
#               then scores the tofacitinib patients' treatment response (TIS)
#   make test   installs into .venv (with test tools) and runs ruff and the test suite against a real FHIR server
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install bench clean

$(BIN)/.installed: pyproject.toml setup.py $(wildcard fhir_adapter/*/*.c)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	rm -rf $(VENV)/lib/python*/site-packages/fhir_adapter  # an empty folder there (left by an older editable install) would shadow the package
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,spark]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/fhir-adapter screen --study NCT07377058 --source sample --as-of 2026-06-30 --format table
	$(BIN)/fhir-adapter response --study NCT04966884 --source sample --format table

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: install
	$(BIN)/python benchmarks/records.py --patients 1000 20000
	$(BIN)/python benchmarks/records.py --patients 1000 20000 --study NCT07377058
	$(BIN)/python benchmarks/screen.py --patients 2000 20000 --share
	$(BIN)/python benchmarks/cohort.py --patients 2000 20000
	$(BIN)/python benchmarks/rules.py --patients 2000
	$(BIN)/python benchmarks/linescan.py
	$(BIN)/python benchmarks/report.py --patients 2000 20000
	$(BIN)/python benchmarks/spark.py --patients 20000
	$(BIN)/python benchmarks/server.py --repeat 2

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
