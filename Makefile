# healer: two commands on a fresh machine — `make run` and `make test`.
#
# As root, `healer run` starts its web side as the unprivileged `healer` user, which must be
# able to run the interpreter and read the installed code. A checkout under /root or in a
# `mktemp -d` directory is closed to that user, and so is an interpreter under /root (pyenv).
# So, as root, the environment is built from the system's Python under /opt/healer, outside
# the checkout, with the project installed into it (not editable: `make` reinstalls it each
# time); .venv is a link to it. Without root nothing is dropped and .venv is a plain
# editable environment in the checkout.
ifeq ($(shell id -u),0)
PYTHON   ?= $(shell [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3)
VENV_DIR ?= /opt/healer/venvs/$(shell pwd -P | sha1sum | cut -c1-12)
EDITABLE :=
else
PYTHON   ?= python3
VENV_DIR ?= $(CURDIR)/.venv
EDITABLE := -e
endif
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean system-deps code

$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV_DIR)
	[ "$(VENV_DIR)" = "$(CURDIR)/$(VENV)" ] || ln -sfn $(VENV_DIR) $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q $(EDITABLE) '.[dev]'
	touch $(STAMP)

# The installed copy follows the checkout (root's environment is not editable).
code: $(STAMP)
ifeq ($(EDITABLE),)
	rm -rf build
	$(BIN)/pip install -q --no-deps --no-build-isolation --force-reinstall .
endif

# Debian packages the tests use (Chromium, iproute2, PostgreSQL, Prometheus, Alertmanager,
# node_exporter, systemd-analyze, the system Python's venv) and, as root, the `healer`
# system user. Installed only when missing.
system-deps:
	@bash .ci/system-deps.sh

run: code
	$(BIN)/healer run

# A chaos suite that skipped every scenario checked nothing: that fails under CI
# (HEALER_CI=1, as root), and is accepted elsewhere, like the tests that need root.
test: system-deps code
	$(BIN)/lint-imports
	$(BIN)/pytest
	$(BIN)/healer chaos suite --quick $(if $(filter-out 0,$(HEALER_CI)),,--allow-skipped)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: code
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/detect_throughput.py
	$(BIN)/python bench/guard_throughput.py
	$(BIN)/python bench/journal_onset.py
	$(BIN)/python bench/agent_http.py

clean:
	rm -rf $(VENV_DIR) $(VENV) .pytest_cache build *.egg-info
