# Quickstart targets. Both create .venv at the repo root when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CPU machines take the CPU wheel of torch; with a GPU present pip's default build is used.
TORCH_SPEC ?= torch==2.13.0

.PHONY: test install clean-venv

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
