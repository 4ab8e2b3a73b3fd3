# URCDM toolkit. `make test` and `make demo` work on a fresh machine: they set up first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PIP_QUIET := 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: setup test demo bench clean

# Idempotent: rebuilds only when the venv is missing or the dependency files changed.
setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip $(PIP_QUIET)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]' $(PIP_QUIET)
	$(PY) -c "import urcdm, openslide, tifffile, imagecodecs, zarr, torch, torchvision; print('setup ok: torch', torch.__version__, 'openslide', openslide.__library_version__)"
	touch $(STAMP)

test: setup
	$(PY) -m pytest

demo: setup
	rm -rf build/demo && mkdir -p build/demo
	$(PY) -m urcdm.sample_data build/demo/ihc-mosaic.tif --repeat 8
	$(VENV)/bin/urcdm info build/demo/ihc-mosaic.tif
	$(VENV)/bin/urcdm convert build/demo/ihc-mosaic.tif build/demo/ihc-mosaic-pyramid.tiff --tile 256 --mpp 0.5
	$(VENV)/bin/urcdm info build/demo/ihc-mosaic-pyramid.tiff --json

bench: setup
	$(PY) benchmarks/bench_pyramid.py

clean:
	rm -rf build $(VENV) .pytest_cache
