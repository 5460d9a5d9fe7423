# framesift: `make demo` runs the golden-frame job on a generated video; `make test` runs the suite.
# Both create .venv on first use: demo installs the core (no torch, about 1.3 GB), test the
# core with the model extras and the test tools (about 7.5 GB). One venv serves both: after
# `make test`, demo finds the core installed; after `make demo`, test adds the rest.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
# what is installed: STAMP the core with [dev,models] (test, install), CORE the core (demo)
STAMP  := $(VENV)/.installed
CORE   := $(VENV)/.installed-core
# where `make realclips` puts real clips and the tests look for them (outside the tree)
export FRAMESIFT_REALCLIPS ?= $(HOME)/.cache/framesift/realclips

.PHONY: install install-core demo lint test test-gpu bench clean postgres browser realclips

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# One OpenCV, headless: a venv installed before the headless variants holds ultralytics and
# opencv-python, which own the same files as ultralytics-opencv-headless and
# opencv-python-headless. Remove them, then put their headless twins' files back.
define one_opencv
	@stale=$$($(PY) -m pip list --format=freeze 2>/dev/null | grep -ioE '^(ultralytics|opencv-python|opencv-contrib-python)==' | tr -d '=' | tr '\n' ' '); \
	if [ -n "$$stale" ]; then \
		echo "removing $$stale (the headless variants replace them)"; \
		$(PY) -m pip uninstall --quiet -y $$stale && \
		twins=$$($(PY) -m pip list --format=freeze | grep -iE '^(opencv-python-headless|ultralytics-opencv-headless)=='); \
		if [ -n "$$twins" ]; then $(PY) -m pip install --quiet --force-reinstall --no-deps $$twins; fi; \
	fi
endef

$(CORE): pyproject.toml | $(PY)
	$(one_opencv)
	$(PY) -m pip install --quiet -e .
	touch $(CORE)

$(STAMP): pyproject.toml | $(PY)
	@# torch's PyPI build brings CUDA libraries: the venv takes about 7.5 GB
	@free=$$(df -Pk $(VENV) | awk 'NR==2 {print int($$4 / 1048576)}'); \
	if [ "$$free" -lt 9 ]; then echo "warning: $$free GB free where .venv lives; the install needs about 8 GB (torch with its CUDA libraries)" >&2; fi
	$(one_opencv)
	$(PY) -m pip install --quiet -e '.[dev,models]'
	touch $(STAMP) $(CORE)

install-core: $(CORE)

install: $(STAMP)

demo: $(CORE)
	$(VENV)/bin/framesift sample-video demo/sample.mp4 --seconds 12 --size 1280x720 --seed 7
	# on the local Ray (a clip this short would run in process by default: --executor auto)
	$(VENV)/bin/framesift golden demo/sample.mp4 --scan-id demo-scan --out output --executor private

# Debian packages some tests need: installed when missing and we are root, otherwise those
# tests skip, saying why. $(call debian,<check command>,<packages>,<what for>)
define debian
	@if { $(1); } >/dev/null 2>&1; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing $(2) (apt-get) for $(3)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
	else \
		echo "note: $(2) missing and not root (or no apt-get): $(3) will be skipped; install with: sudo apt-get install $(2)" >&2; \
	fi
endef

# The Supabase schema tests need a PostgreSQL server (Debian's, started by the tests as the
# postgres user).
postgres:
	$(call debian,ls /usr/lib/postgresql/*/bin/initdb,postgresql,the Supabase schema tests)

# The web console tests drive a real browser: Debian's chromium with its matching chromedriver.
browser:
	$(call debian,command -v chromium && command -v chromedriver,chromium chromium-driver,the web console browser tests)

# Real clips that other people recorded (OpenCV's and imageio's sample videos, from Debian
# packages: apt-get download, no install) into a cache outside the tree; skipped with a note
# when not root or no apt-get (the real-clip tests then skip, saying why). tests/realclips.py
realclips: $(STAMP)
	@$(PY) tests/realclips.py fetch

# Lint and type check first (seconds), then the suite.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

test: $(STAMP) postgres browser realclips lint
	$(PY) -m pytest

# On a machine with a CUDA GPU: the gpu-marked tests, failing (not skipping) without CUDA.
test-gpu: $(STAMP)
	FRAMESIFT_REQUIRE_GPU=1 $(PY) -m pytest -m gpu -v

bench: $(STAMP)
	$(PY) bench/golden.py

clean:
	rm -rf output demo .pytest_cache tests/artifacts
