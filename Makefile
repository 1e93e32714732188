# Two commands do all set-up on a fresh machine (README "Quick start"):
#   make course   install everything the notebooks need, then open JupyterLab on notebooks/
#   make test     install everything the tests need, then run every test, notebooks included
#
# The virtual environment lives in .venv. torch is installed first, pinned, so that
# the rest of the stack does not pull a multi-GB CUDA build: override TORCH to pick
# another build, e.g.  make course TORCH="torch==2.13.0 --index-url <your CPU wheel index>"

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
PORT   ?= 8888

.PHONY: course test install install-test system-deps benchmarks binder-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.torch: $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH)
	touch $@

install: $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e ".[notebooks]"

install-test: $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e ".[notebooks,test]"

# Debian packages for the optional tests: espeak-ng (byte-for-byte regeneration of the
# spoken digits) and chromium (browser tests). Without root/apt those tests are skipped
# with a reason.
system-deps:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (command -v espeak-ng >/dev/null && command -v chromium >/dev/null) || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng chromium >/dev/null); \
	else echo "note: not root or no apt-get: espeak-ng/chromium tests will be skipped unless installed"; fi

course: install
	$(BIN)/jupyter lab --notebook-dir=notebooks --port=$(PORT) notebooks/00_tour.ipynb

test: install-test system-deps
	$(BIN)/python -m pytest tests notebooks --nbmake --nbmake-timeout=600 -p no:cacheprovider

benchmarks: install
	$(BIN)/python benchmarks/course.py

# a fresh venv from binder/ alone, every notebook on one CPU, against Binder's 2 GB
binder-check:
	$(PYTHON) benchmarks/binder_check.py

clean:
	rm -rf $(VENV) .pytest_cache
