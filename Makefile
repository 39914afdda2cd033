# kubemonitor — the two commands a newcomer needs: `make demo` and `make test`.
IMAGE_NAME ?= kubemonitor/kube-monitoring
VERSION    ?= 0.1.0
PYTHON     ?= python3
PORT       ?= 8000

.PHONY: all build push install system-deps test demo run bench lint

all: build push

build:
	docker build -t $(IMAGE_NAME):$(VERSION) .

push:
	docker push $(IMAGE_NAME):$(VERSION)

# System packages the tests and the demo need (Debian): InfluxDB 1.x and Chromium.
system-deps:
	@if ! command -v influxd >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq influxdb chromium; \
	fi

install:
	$(PYTHON) -m pip install -q -e '.[test]'
	@if [ -f static/package.json ]; then cd static && npm ci --no-audit --no-fund --silent; fi

test:
	$(PYTHON) -m pytest

# Installs what is missing (the project, the chart asset; influxd is installed by
# `kubemonitor demo` itself from Debian's packages), then runs the demo until Ctrl-C.
demo:
	@$(PYTHON) -c "import tornado, influxdb, bcrypt, yaml, prometheus_client" 2>/dev/null || $(PYTHON) -m pip install -q -e .
	@if [ ! -d static/node_modules/uplot ] && command -v npm >/dev/null 2>&1; then cd static && npm ci --no-audit --no-fund --silent; fi
	$(PYTHON) -m kubemonitor demo --port $(PORT)

run:
	$(PYTHON) -m kubemonitor serve $(PORT)

bench:
	$(PYTHON) bench/api_overhead.py

lint:
	ruff check kubemonitor tests bench
