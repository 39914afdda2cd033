# kubemonitor — the two commands a newcomer needs: `make demo` and `make test`.
# Both install what they lack (and nothing when all is there), on a fresh machine too.
IMAGE_NAME ?= kubemonitor/kube-monitoring
VERSION    ?= $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' kubemonitor/__init__.py)
PYTHON     ?= python3
PORT       ?= 8000
SOURCE     ?= heapster
FAULTS     ?=

.PHONY: all build push install system-deps test test-fast test-dates demo run bench lint vendor

all: build push

build:
	docker build -t $(IMAGE_NAME):$(VERSION) .

push:
	docker push $(IMAGE_NAME):$(VERSION)

# System packages the tests need (Debian): InfluxDB 1.x and Chromium, when missing.
system-deps:
	@if ! command -v influxd >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq influxdb chromium; \
	fi

install: system-deps
	$(PYTHON) -m pip install -q -e '.[test]'

# pytest's exit status 5 (no test collected) is a failure, not a pass.
test: system-deps
	@$(PYTHON) tools/requirements_met.py test || $(PYTHON) -m pip install -q -e '.[test]'
	@$(PYTHON) -m pytest; status=$$?; \
	  if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests; that is a failure" >&2; exit 1; fi; \
	  exit $$status

# The fast tier: pure functions and in-process objects, no server started (seconds).
test-fast:
	@$(PYTHON) tools/requirements_met.py test || $(PYTHON) -m pip install -q -e '.[test]'
	@$(PYTHON) -m pytest -q -p no:cacheprovider tests/fast; status=$$?; \
	  if [ $$status -eq 5 ]; then echo "make test-fast: pytest collected no tests; that is a failure" >&2; exit 1; fi; \
	  exit $$status

# The suite with the wall clock moved to the edges of a month (libfaketime): 00:20 UTC on
# the 1st of next month, and 23:20 UTC on the last day of this one (the last hour of a UTC
# month, the first of a month in Europe/Zurich). The monotonic clock is left alone: faked, it
# turns a thread's 1-s wait into weeks. influxd (Go) keeps the real clock, so the suite also
# runs with kubemonitor's clock a month ahead of InfluxDB's.
test-dates: system-deps
	@command -v faketime >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -qq faketime; }
	@$(PYTHON) tools/requirements_met.py test || $(PYTHON) -m pip install -q -e '.[test]'
	@first=$$(date -u -d "$$(date -u +%Y-%m-01) +1 month" +%Y-%m-%d); \
	  last=$$(date -u -d "$$first -1 day" +%Y-%m-%d); \
	  for at in "$$first 00:20:00" "$$last 23:20:00"; do \
	    offset=$$(( $$(date -u -d "$$at UTC" +%s) - $$(date -u +%s) )); \
	    echo "make test-dates: the suite at $$at UTC"; \
	    faketime -f "+$${offset}s" $(PYTHON) -m pytest -q -p no:cacheprovider || exit 1; \
	  done

# Installs the package when missing (influxd is installed by `kubemonitor demo` itself
# from Debian's packages), then runs the demo until Ctrl-C. `make demo SOURCE=telegraf`
# simulates Telegraf and the DCGM exporter instead of Heapster.
demo:
	@$(PYTHON) tools/requirements_met.py || $(PYTHON) -m pip install -q -e .
	$(PYTHON) -m kubemonitor demo --port $(PORT) --source $(SOURCE) $(if $(FAULTS),--faults $(FAULTS))

run:
	$(PYTHON) -m kubemonitor serve $(PORT)

bench:
	$(PYTHON) bench/api_overhead.py

# ruff, and mypy with every function of the package typed (pyproject's [tool.mypy]).
# .ci/run runs it before the tests; .pre-commit-config.yaml runs the same two.
lint:
	@$(PYTHON) tools/requirements_met.py lint || $(PYTHON) -m pip install -q -e '.[lint]'
	$(PYTHON) -m ruff check kubemonitor tests bench tools vendor
	$(PYTHON) -m mypy

# Refresh kubemonitor/static/vendor/ from vendor/package-lock.json (needs npm; the result is committed).
vendor:
	$(PYTHON) vendor/refresh.py
