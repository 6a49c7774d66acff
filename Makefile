# zoo: `make demo` runs the main job, `make test` runs every test. Both set up first (idempotent).
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
export LIBTORCH_USE_PYTORCH := 1
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export ZOO_PYTHON := $(VENV)/bin/python
CARGO ?= cargo
ZOO := target/release/zoo

.PHONY: setup build demo test bench lint fmt clean

setup:
	@tools/setup.sh

build: setup
	$(CARGO) build --release --bin zoo

demo: build
	@tools/demo.sh

test: setup
	$(CARGO) build --release --bin zoo
	$(CARGO) test --release -- --test-threads=2

bench: build
	@tools/bench.sh

lint: setup
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
	rm -rf build
