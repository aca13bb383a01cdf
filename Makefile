# Two commands on a fresh machine: `make demo` (install + run the study on demo data) and
# `make test` (install + run the tests). Everything installs into .venv from pyproject.toml.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
SNAKEMAKE := $(BIN)/snakemake

.PHONY: install demo report test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: install
	$(SNAKEMAKE) --cores $(CORES) --configfile overlays/demo.yaml
	$(MAKE) --no-print-directory report

report: install
	$(SNAKEMAKE) --cores 1 --configfile overlays/demo.yaml --report results/report.html
	@echo "Report: $(CURDIR)/results/report.html"

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile rules
	$(SNAKEMAKE) --lint --configfile overlays/demo.yaml

clean:
	rm -rf results logs .snakemake
