# fastxent developer entry points. `make demo` and `make test` work on a fresh machine:
# they create the virtualenv, install the package (editable) with its test extras and the
# CPU build of PyTorch, then run. Stamp files inside the venv keep a second run from
# reinstalling; editing pyproject.toml, setup.py or a Cython source triggers a reinstall.

VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0

BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.fastxent-venv.stamp
INSTALL_STAMP := $(VENV)/.fastxent-install.stamp
BENCH_STAMP := $(VENV)/.fastxent-bench.stamp
BUILD_INPUTS := pyproject.toml setup.py $(shell find fastxent -name '*.pyx' -o -name '*.pxd' -o -name '*.h' 2>/dev/null)

.PHONY: venv install demo test bench asv clean distclean

venv: $(VENV_STAMP)
$(VENV_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel
	touch $@

install: $(INSTALL_STAMP)
# torch: only this exact version lies on disk as a CPU wheel; never install an unpinned torch
# (that downloads a multi-GB CUDA build). It is not a package extra for the same reason.
$(INSTALL_STAMP): $(VENV_STAMP) $(BUILD_INPUTS)
	$(BIN)/python -m pip install -e ".[test,cuda]"
	$(BIN)/python -m pip install "$(TORCH_SPEC)"
	touch $@

demo: $(INSTALL_STAMP)
	$(BIN)/python -m fastxent demo

# The CUDA backend is tested twice: in the main run (every kernel compiled to PTX for a Hopper
# GPU, device detection) and under Numba's CUDA simulator, where the backend fixture is "cuda"
# only: the shared suite on small shapes plus tests/test_cuda.py (device inputs and outputs).
test: $(INSTALL_STAMP)
	$(BIN)/python -m pytest -q tests/
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/

$(BENCH_STAMP): $(INSTALL_STAMP)
	$(BIN)/python -m pip install -e ".[test,bench]"
	touch $@

# Quick timing table (fastxent vs the NumPy reference and PyTorch, with the machine's copy
# bandwidth); `make asv` runs the asv suite once on the current environment
# (e.g. `make asv ASV_ARGS="-b Losses"` for the main benchmark class alone).
ASV_ARGS ?=
bench: $(INSTALL_STAMP)
	$(BIN)/python -m fastxent bench

asv: $(BENCH_STAMP)
	cd asv_bench && ../$(BIN)/asv machine --yes && ../$(BIN)/asv run --python=same --quick $(ASV_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis
	rm -rf asv_bench/env asv_bench/results asv_bench/html
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name '*.so' \) -print0 | xargs -0 rm -rf
	find fastxent -name '*.pyx' | sed 's/\.pyx$$/.c/' | xargs rm -f

distclean: clean
	rm -rf $(VENV)
