# framesift: `make demo` runs the golden-frame job on a generated video; `make test` runs the suite.
# Both create .venv and install the project with its dependencies on first use.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-gpu bench clean postgres browser

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

# The Supabase schema tests need a PostgreSQL server (Debian's, started by the tests as the
# postgres user). Installed here when missing and we are root; otherwise those tests skip.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing the PostgreSQL server (apt-get install postgresql) for the schema tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else \
		echo "note: no PostgreSQL server and not root (or no apt-get): the Supabase schema tests will be skipped; install it with: sudo apt-get install postgresql" >&2; \
	fi

# The web console tests drive a real browser: Debian's chromium with its matching chromedriver.
# Installed here when missing and we are root; otherwise those tests skip, saying why.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver (apt-get) for the web console tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
		echo "note: no chromium/chromedriver and not root (or no apt-get): the browser tests will be skipped; install them with: sudo apt-get install chromium chromium-driver" >&2; \
	fi

test: $(STAMP) postgres browser
	$(PY) -m pytest

# On a machine with a CUDA GPU: the gpu-marked tests, failing (not skipping) without CUDA.
test-gpu: $(STAMP)
	FRAMESIFT_REQUIRE_GPU=1 $(PY) -m pytest -m gpu -v

bench: $(STAMP)
	$(PY) bench/golden.py

clean:
	rm -rf output demo .pytest_cache tests/artifacts
