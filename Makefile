# URCDM toolkit. `make test` and `make demo` work on a fresh machine: they set up first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OSD    := urcdm/deepzoom/static/openseadragon/openseadragon.min.js
PIP_QUIET := 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: setup test demo bench notebooks clean

# Idempotent: rebuilds only when the venv is missing or the dependency files changed.
setup: $(STAMP) $(OSD)

# OpenSeadragon (the deep-zoom viewer) is on npm, not PyPI: the version pinned in web/package-lock.json,
# copied into the package so `urcdm view` and whole-slide studies serve it themselves (offline, no CDN).
$(OSD): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	rm -rf urcdm/deepzoom/static/openseadragon
	cp -r web/node_modules/openseadragon/build/openseadragon urcdm/deepzoom/static/openseadragon
	touch $(OSD)

# pip byte-compiles every installed module up front (about a minute on 2 cores). Keep it: where
# PYTHONDONTWRITEBYTECODE is set, as on our CI machines, Python would otherwise recompile every module
# on every import (--no-compile saved 100 s of setup and cost 3 min of tests).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip $(PIP_QUIET)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]' $(PIP_QUIET)
	$(PY) -c "import urcdm, openslide, tifffile, imagecodecs, zarr, torch, torchvision; print('setup ok: torch', torch.__version__, 'openslide', openslide.__library_version__)"
	touch $(STAMP)

# Two worker processes with one thread each, each test file kept in one worker (its module fixtures
# train their models once). Alone, the suite left one of CI's 2 cores idle half the time, waiting on
# subprocesses, servers and browsers: 1025 s in one process, 622 s in two. Two workers of two threads
# each spent 70 % more CPU time on oversubscribed threads and were no faster than one.
TEST_WORKERS ?= 2
test: setup
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The main job on embedded data: pFID of degraded versions of a real micrograph against the original,
# with the best extractor this machine has (the standard FID Inception when its weights are found).
DEMO := build/demo
DEMO_EVAL = $(VENV)/bin/urcdm-eval
DEMO_FLAGS = --n 160 --batch-size 32 --workers 2 --extractor $$(cat $(DEMO)/extractor)
demo: setup
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(PY) -m evaluation.demo_data $(DEMO) > $(DEMO)/extractor
	$(VENV)/bin/urcdm info $(DEMO)/real/ihc-real.tiff
	$(DEMO_EVAL) stats $(DEMO)/real -o $(DEMO)/real.npz $(DEMO_FLAGS)
	@echo "== pfid: real vs other crops of the same real image (the sampling-noise floor)"
	$(DEMO_EVAL) pfid $(DEMO)/real.npz $(DEMO)/real $(DEMO_FLAGS) --seed 1
	for fake in blurred stain-shift jpeg-q5; do \
	  echo "== pfid: real vs $$fake"; \
	  $(DEMO_EVAL) pfid $(DEMO)/real.npz $(DEMO)/$$fake $(DEMO_FLAGS) || exit 1; \
	done
	$(DEMO_EVAL) all $(DEMO)/real.npz $(DEMO)/blurred $(DEMO_FLAGS) --json > $(DEMO)/blurred.json
	@echo "demo: JSON result in $(DEMO)/blurred.json"

# Runs every notebook with its default parameters and writes the outputs into the committed .ipynb.
notebooks: setup
	$(PY) notebooks/run.py

bench: setup
	$(PY) benchmarks/bench_pyramid.py
	$(PY) benchmarks/bench_eval.py
	$(PY) benchmarks/bench_pfid_law.py
	$(PY) benchmarks/bench_preprocessing.py
	$(PY) benchmarks/bench_store.py
	$(PY) benchmarks/bench_study.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_sampler.py
	$(PY) benchmarks/bench_seams.py
	$(PY) benchmarks/bench_viewer.py

clean:
	rm -rf build $(VENV) .pytest_cache web/node_modules urcdm/deepzoom/static/openseadragon
