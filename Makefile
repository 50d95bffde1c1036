# Two commands for a fresh machine: `make demo` and `make test`. Both build .venv first.
# Optional third: `make lab` (JupyterLab on notebooks/; PORT=8899 or TOKEN=... to choose).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8888
TOKEN ?=

.PHONY: install demo test lab notebooks lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(BIN)/sliceseg demo --out demo_output --overwrite

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

# The notebooks extra (JupyterLab, widgets, papermill) and the kernel the notebooks name,
# "Python (sliceseg)": `make notebooks` alone before a headless papermill run.
notebooks: $(VENV)/.notebooks

$(VENV)/.notebooks: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[notebooks]"
	$(BIN)/python -m ipykernel install --sys-prefix --name sliceseg --display-name "Python (sliceseg)"
	touch $@

# JupyterLab on notebooks/, no browser opened: open the URL it prints (with its token).
lab: $(VENV)/.notebooks
	@echo "JupyterLab on notebooks/ at http://127.0.0.1:$(PORT)/lab: open the URL printed below; Ctrl-C stops it."
	$(BIN)/python -m jupyterlab --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port=$(PORT) \
		--ServerApp.port_retries=0 --ServerApp.root_dir=notebooks \
		$(if $(TOKEN),--IdentityProvider.token=$(TOKEN)) $(if $(filter 0,$(shell id -u)),--allow-root)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests bench

bench: install
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/predict_speed.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache .ruff_cache
