# framesift: `make demo` runs the golden-frame job on a generated video; `make test` runs the suite.
# Both create .venv and install the project with its dependencies on first use.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11" >&2; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,models]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/framesift sample-video demo/sample.mp4 --seconds 12 --size 1280x720 --seed 7
	$(VENV)/bin/framesift golden demo/sample.mp4 --scan-id demo-scan --out output

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/golden.py

clean:
	rm -rf output demo .pytest_cache
