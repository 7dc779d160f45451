# ovirt.node_plugins: the two commands a newcomer needs are `make demo` and `make test`.
# Both run `make setup` first (apt packages from bindep.txt, .venv, the collection link).

VENV   := $(CURDIR)/.venv
PY     := $(VENV)/bin/python
export PATH := $(VENV)/bin:/usr/sbin:/sbin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(VENV)/collections
export OVIRT_NODE_PLUGINS_CACHE ?= $(CURDIR)/.cache

.PHONY: all setup demo test mypy unit integration sanity lint build-collection molecule fixtures bench clean help

help:
	@echo "make demo      the main job, end to end (build fixture ISO, pack plugin, rebuild, verify, boot)"
	@echo "make test      every test and gate (mypy, pytest, ansible-test sanity, ansible-lint, collection build)"
	@echo "make mypy      type checks of the plugins (config in pyproject.toml; seconds)"
	@echo "make setup     install system packages, .venv and the collection link (run by the others)"
	@echo "make fixtures  build the Node-like fixture ISO and example plugins (cached) and print paths"
	@echo "make bench     benchmarks, printed as ratios against baselines measured in the same run"
	@echo "make clean     remove build outputs (keeps .venv and the fixture cache)"

setup:
	@./hack/setup

demo: setup
	@./hack/demo

test: setup
	@./hack/test all

mypy: setup
	@./hack/test mypy

unit: setup
	@./hack/test unit

integration: setup
	@./hack/test integration

sanity: setup
	@./hack/test sanity

lint: setup
	@./hack/test lint

build-collection: setup
	@./hack/test build

molecule: setup
	@./hack/test molecule

fixtures: setup
	@$(PY) -m tests.fixtures.build

bench: setup
	@$(PY) -m bench.run

clean:
	rm -rf build out tests/output .pytest_cache .mypy_cache ovirt-node_plugins-*.tar.gz
