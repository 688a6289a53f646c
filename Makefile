# Statecast: two commands do all set-up on a fresh machine.
#   make demo   - the main job: local broker, default model, scorer, replayed feed, report
#   make test   - the whole (non-slow) test suite against a real Kafka broker
# `make setup` does only the installing; every other target calls it first.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.statecast-installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-unit test-slow lint check-alerts bench-quick default-model kafka-up kafka-down clean

setup: $(STAMP) .statecast/kafka/.fetched .statecast/prometheus.installed

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install --python $(PY) -q -e '.[train,dev,confluent,signing]'
	@touch $@

# Apache Kafka broker jars from Maven Central (cached in .statecast/, git-ignored).
.statecast/kafka/.fetched: $(STAMP)
	$(BIN)/statecast kafka fetch
	@touch $@

# Prometheus (prometheus + promtool) and Alertmanager from Debian's packages, for the
# alerting tests (rules, dashboards' queries, and delivery of alerts to a webhook).
.statecast/prometheus.installed:
	@mkdir -p .statecast
	@{ command -v promtool && command -v prometheus-alertmanager; } >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq prometheus prometheus-alertmanager; }
	@promtool --version | head -1
	@prometheus-alertmanager --version 2>&1 | head -1
	@touch $@

demo: setup
	$(BIN)/statecast demo

# Two pytest processes side by side: the tests that talk to the broker (`integration`: one
# broker, their topics and groups, one test at a time) and, beside them, the rest (CPU work
# while the broker tests mostly wait on Kafka), niced: the broker tests' scorers, broker and
# timeouts come first, the rest takes the CPU they leave. On 2 cores that took the suite
# from 680 s in turn to 525 s (2026-12-07). Each half's own output, the second after the first; the
# target fails if either does (5, no test selected, is fine: PYTEST_ARGS may name a file).
# --durations: the CI log names the tests that push `make test` towards its ~12-minute budget.
test: setup lint
	@tmp=$$(mktemp -d); trap 'kill $$unit 2>/dev/null; rm -rf $$tmp' EXIT; \
	nice -n 10 $(BIN)/pytest -m "not slow and not integration" --durations=5 --basetemp=$$tmp/base \
	  $(PYTEST_ARGS) > $$tmp/log 2>&1 & unit=$$!; \
	$(BIN)/pytest -m "not slow and integration" --durations=15 $(PYTEST_ARGS); rc=$$?; \
	wait $$unit; urc=$$?; unit=; \
	echo "=== the tests without the broker, run beside those above ==="; cat $$tmp/log; \
	echo "make test: broker tests exit $$rc, the others exit $$urc"; \
	{ [ $$rc = 0 ] || [ $$rc = 5 ]; } && { [ $$urc = 0 ] || [ $$urc = 5 ]; } && [ $$rc$$urc != 55 ]

test-unit: setup
	$(BIN)/pytest -m "not slow and not integration" $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check pipeline training tests benchmarks grafana
	$(BIN)/ruff format --check pipeline training tests benchmarks grafana
	$(BIN)/mypy

bench-quick: setup
	$(BIN)/statecast bench --quick

kafka-up: setup
	$(BIN)/statecast kafka up

kafka-down:
	$(BIN)/statecast kafka down

clean:
	rm -rf $(VENV) .statecast .pytest_cache .mypy_cache .ruff_cache

# The shipped default model, trained only on data the project generates itself: a broad
# pretraining corpus (varied sampling periods, seasons, noise, counts, bursts) plus the
# synthetic sensor feeds with injected anomalies; then the NAB and forecast benchmarks
# (docs/quality.md) check it on real data it never saw.
default-model: setup
	$(BIN)/statecast generate --corpus --out .statecast/corpus --streams 200 --length 3000 --seed 0 --prefix corpus
	$(BIN)/statecast generate --out .statecast/synthetic --streams 24 --length 4000 --seed 0
	$(BIN)/statecast train --data .statecast/corpus --data .statecast/synthetic --registry exported_models --model default --promote always --max-epochs 20

# Alerting: promtool rule checks and unit tests, dashboards, and the real-Prometheus test.
check-alerts: setup
	$(BIN)/pytest -m alerting $(PYTEST_ARGS)
