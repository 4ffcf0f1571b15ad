# stepml — the two commands a new machine needs are `make demo` and `make test`;
# each installs what it needs into .venv first.

# The repository's root, also when sam build runs a target from a copy of a ContentUri.
ROOT := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stepml-installed
ENV ?= dev
export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install lint test test-unit demo bench build deploy validate preflight clean java chromium package-check \
	checkov build-StepmlLibraryLayer

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 (Lambda's python3.11 runtime)" >&2; exit 1; }
	@echo "==> creating $(VENV) and installing stepml with its pinned dependencies (first run takes a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --progress-bar off -c requirements/constraints.txt -e '.[local,dev]'
	@touch $(STAMP)
	@echo "==> installed: $$($(BIN)/stepml --version 2>/dev/null || echo stepml)"

# PySpark (the local Glue engine) needs a Java runtime; Glue 5.0 runs on Java 17.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "==> Java not found: installing openjdk-17-jre-headless (PySpark needs it)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null; \
	  else echo "error: install a Java 17 runtime (e.g. sudo apt-get install openjdk-17-jre-headless) and retry" >&2; exit 1; fi; }

# The browser tests (tests/e2e/test_approval_browser.py) drive Debian's headless Chromium with
# Playwright; Playwright's own browser download is never used (`playwright install` is not run).
CHROMIUM ?= /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { \
	  echo "==> $(CHROMIUM) not found: installing Debian's chromium package (the approval browser tests need it)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "error: install Chromium (e.g. sudo apt-get install chromium) so that $(CHROMIUM) exists, and retry" >&2; exit 1; fi; }
	@test -x $(CHROMIUM) || { echo "error: $(CHROMIUM) is still missing after installing chromium" >&2; exit 1; }

lint: install
	@echo "==> ruff"
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@echo "==> cfn-lint"
	$(BIN)/cfn-lint template.yaml
	@echo "==> sam validate --lint"
	$(BIN)/sam validate --lint --region us-east-1 --template-file template.yaml
	$(BIN)/stepml asl validate

# The unit tier and the local-cloud tiers run as two pytest processes at once (scripts/run_test_tiers.py);
# `make test SERIAL=1` runs them one after the other.
test: install java chromium lint package-check checkov
	$(BIN)/python scripts/run_test_tiers.py $(if $(SERIAL),--serial)

test-unit: install java
	$(BIN)/python -m pytest tests/unit -q

# The whole pipeline on the local cloud; `make demo ARGS=--approve` approves without a person.
demo: install java
	$(BIN)/stepml demo $(ARGS)

# The benchmarks, one after another, each printing its table (docs/measured.md); under 15 minutes
# on the 2-core machine: one 50,000-row run, 20 uploads over a minute, the endpoint with a 60 s soak,
# and the scale bench at 50,000 and 500,000 rows (its full run, 5M rows and the 200-feature
# dataset included, is `bench/bench_scale.py` with its defaults). `make bench BENCHES=bench_endpoint` runs one.
BENCHES ?= bench_pipeline bench_load bench_endpoint bench_scale
BENCH_SCALE_ARGS ?= --sizes 50000,500000 --wide-rows 0
bench: install java
	@for name in $(BENCHES); do echo "==> bench/$$name.py"; args=""; \
	  if [ $$name = bench_scale ]; then args="$(BENCH_SCALE_ARGS)"; fi; \
	  $(BIN)/python bench/$$name.py $$args || exit 1; done

# Bakes the git commit into the layer (lineage records it as the code version), then builds.
# --no-cached: sam build's cache keys the layer on src/ alone, but its contents also follow from the
# handlers' imports and requirements/constraints.txt.
build: install
	$(BIN)/python scripts/write_build_info.py
	$(BIN)/sam build --config-env $(ENV) --no-cached

# sam build's target for the layer (template.yaml: BuildMethod makefile). sam build runs it from a
# copy of the layer's ContentUri (src/) with ARTIFACTS_DIR set; the layer's modules go to python/.
LAYER_PYTHON ?= $(if $(filter /%,$(BIN)),$(BIN),$(ROOT)$(BIN))/python
build-StepmlLibraryLayer:
	$(LAYER_PYTHON) $(ROOT)scripts/build_layer.py --source . --out "$(ARTIFACTS_DIR)/python"

# A fresh sam build (no cache: the layer depends on files outside its ContentUri), then every
# function's code and layers against Lambda's size limits.
package-check: install
	@echo "==> sam build and package sizes"
	$(BIN)/sam build --template-file template.yaml --build-dir .aws-sam/build
	$(BIN)/python scripts/check_package_sizes.py --build-dir .aws-sam/build

# checkov pins boto3 against requirements/constraints.txt, so it lives in its own venv.
CHECKOV_VENV ?= $(VENV)/tools/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_ARGS := --framework cloudformation --compact --quiet --skip-download

$(CHECKOV_STAMP): requirements/checkov.txt
	@echo "==> installing checkov into $(CHECKOV_VENV)"
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --progress-bar off -r requirements/checkov.txt
	@touch $(CHECKOV_STAMP)

# Both the template as written and as CloudFormation runs it (SAM-generated roles, stage, layer);
# every finding is fixed or suppressed in template.yaml (Metadata: checkov: skip) with its reason.
checkov: install $(CHECKOV_STAMP)
	@echo "==> checkov"
	$(BIN)/python scripts/transform_template.py --out .aws-sam/transformed.json
	$(CHECKOV_VENV)/bin/checkov -f template.yaml $(CHECKOV_ARGS)
	$(CHECKOV_VENV)/bin/checkov -f .aws-sam/transformed.json $(CHECKOV_ARGS)

validate: lint

deploy: build
	$(BIN)/sam deploy --config-env $(ENV)

# Before a deploy: ask the account your AWS credentials name what only it can answer (the
# definition through AWS's validator, the SES sender, the pandas layer, the XGBoost image,
# SageMaker quotas, Glue). Exits non-zero on any FAIL. `make preflight ENV=prod ARGS=--json`.
preflight: install
	$(BIN)/stepml preflight --config-env $(ENV) $(ARGS)

clean:
	rm -rf .aws-sam .pytest_cache .ruff_cache src/stepml/_build_info.json
