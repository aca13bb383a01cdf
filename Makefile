# Two commands on a fresh machine: `make demo` (install + run the study on demo data) and
# `make test` (install + run the tests). Everything installs into .venv from pyproject.toml.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
SNAKEMAKE := $(BIN)/snakemake

.PHONY: install demo report test lint clean cluster-profile

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The run writes results/report.html when it ends (config report.after_run) and prints its path.
demo: install
	$(SNAKEMAKE) --cores $(CORES) --configfile overlays/demo.yaml

report: install
	$(SNAKEMAKE) --cores 1 --configfile overlays/demo.yaml --report results/report.html
	@echo "Report: $(CURDIR)/results/report.html"

# The `slurm` profile that `snakemake --profile slurm` reads, where you have none:
# make cluster-profile ACCOUNT=myaccount PARTITION=cpu GPU_PARTITION=gpu  (an existing profile
# is kept, and shown; PARTITION: every job's, GPU_PARTITION: the jobs that ask for a GPU)
cluster-profile: install
	$(BIN)/python -m cxrlib.cluster install $(if $(ACCOUNT),--account $(ACCOUNT)) $(if $(PARTITION),--partition $(PARTITION)) $(if $(GPU_PARTITION),--gpu-partition $(GPU_PARTITION))

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile rules
	$(SNAKEMAKE) --lint --configfile overlays/demo.yaml

clean:
	rm -rf results logs .snakemake
