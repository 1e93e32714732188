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

# pip prints one line per package it collects (no progress bars: they garble CI logs)
PIP    := $(BIN)/python -m pip install --progress-bar off --disable-pip-version-check
# JupyterLab refuses to start as root (Docker, Binder-like containers, CI images) without this
ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

$(BIN)/python:
	@echo "== [1/3] creating $(VENV) ($$(date +%T))"
	$(PYTHON) -m venv $(VENV)
	$(PIP) --quiet --upgrade pip

$(VENV)/.torch: $(BIN)/python
	@echo "== [2/3] installing $(TORCH) (CPU build; about 45 s) ($$(date +%T))"
	$(PIP) $(TORCH) | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import torch" && touch $@

install: $(VENV)/.torch
	@echo "== [3/3] installing mmlearn and the notebook stack (about 1.5 min the first time) ($$(date +%T))"
	$(PIP) -e ".[notebooks]" 2>&1 | grep -v "^WARNING: Location\|^Requirement already satisfied" ; \
	  $(BIN)/python -c "import mmlearn, jupyterlab" && echo "== installed ($$(date +%T))"

install-test: $(VENV)/.torch
	@echo "== [3/3] installing mmlearn, the notebook and the test stack (about 1.5 min the first time) ($$(date +%T))"
	$(PIP) -e ".[notebooks,test]" 2>&1 | grep -v "^WARNING: Location\|^Requirement already satisfied" ; \
	  $(BIN)/python -c "import mmlearn, pytest, nbmake, hypothesis" && echo "== installed ($$(date +%T))"

# Debian packages for the optional tests: espeak-ng (byte-for-byte regeneration of the
# spoken digits) and chromium (browser tests). Without root/apt those tests are skipped
# with a reason.
system-deps:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (command -v espeak-ng >/dev/null && command -v chromium >/dev/null) || \
	  (echo "== installing espeak-ng and chromium with apt-get (about 40 s) ($$(date +%T))" && \
	   apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng chromium >/dev/null); \
	else echo "note: not root or no apt-get: espeak-ng/chromium tests will be skipped unless installed"; fi

# The server's root is the repository, as on Binder, so the tour is notebooks/00_tour.ipynb in
# both (the Binder badge opens lab/tree/notebooks/00_tour.ipynb).
course: install
	$(BIN)/jupyter lab $(ALLOW_ROOT) --ServerApp.root_dir=. --port=$(PORT) notebooks/00_tour.ipynb

# -v names each test as it finishes (the notebooks take up to a minute each); --durations lists
# the slowest tests at the end.
test: install-test system-deps
	@echo "== running the tests: unit, panels, browser, then every notebook (about 10-15 min on 2 cores) ($$(date +%T))"
	$(BIN)/python -m pytest tests notebooks --nbmake --nbmake-timeout=600 -p no:cacheprovider -v --durations=15

benchmarks: install
	$(BIN)/python benchmarks/course.py

# a fresh venv from binder/ alone, every notebook on one CPU, against Binder's 2 GB
binder-check:
	$(PYTHON) benchmarks/binder_check.py

clean:
	rm -rf $(VENV) .pytest_cache
