# Keyglass — two commands on a fresh Debian machine with the Swift toolchain:
#   make run    installs what is missing, builds, initialises ./data if absent, serves on 127.0.0.1:8080
#   make test   installs what is missing, lints the verification core and runs every test
SHELL := /bin/bash
.DEFAULT_GOAL := help

DATA   ?= ./data
ORIGIN ?= localhost/keyglass
HOST   ?= 127.0.0.1
PORT   ?= 8080
SWIFT  ?= swift
# Ships with the Swift 6 toolchain (<toolchain>/usr/bin/swift-format): nothing to install.
SWIFT_FORMAT ?= swift-format

# System packages: libsodium (Ed25519), SQLite, OpenSSL's libcrypto (SHA-NI SHA-256, P-256 point
# checks), pkg-config (SwiftPM finds the libraries with it). Go and golang.org/x/mod are for the test
# that has Go's sumdb packages verify our checkpoints and proofs; nginx for the test that runs
# Deploy/nginx/keyglass-locations.conf in a real nginx in front of a real server; postgresql for the
# PostgreSQL driver's tests (throwaway clusters in temporary directories); prometheus for
# promtool (GET /metrics and Deploy/prometheus's alert rules are checked with it) and chromium for
# the status page's test in a headless browser. Those two without their recommended packages:
# prometheus's would add a node exporter, chromium's a desktop's worth of extras.
RUN_PACKAGES  := libsodium-dev libsqlite3-dev libssl-dev pkg-config
TEST_PACKAGES := $(RUN_PACKAGES) golang-go golang-golang-x-mod-dev python3-pip nginx-light openssl postgresql
LEAN_TEST_PACKAGES := prometheus chromium

# $(1): Debian packages; $(2): further apt-get install flags.
define install_missing
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $(2) $$missing >/dev/null; \
	fi
	@command -v $(SWIFT) >/dev/null || { echo "Swift 6 is required (https://www.swift.org/install/linux/)"; exit 1; }
endef

.PHONY: help deps test-deps bench-deps build run lint test bench soak clean

help:
	@echo "make run    build and serve a log on $(HOST):$(PORT) (data in $(DATA))"
	@echo "make test   lint the verification core, then run the test suite"
	@echo "make lint   swift-format lint of Sources/KeyglassCore only (strict)"
	@echo "make build  release build of keyglass-server and keyglass into .build/release"
	@echo "make bench  measure throughput, proof reads, audit speed and memory (prints a table)"
	@echo "make soak   long load + crash + hostile-input runs"

deps:
	$(call install_missing,$(RUN_PACKAGES))

test-deps:
	$(call install_missing,$(TEST_PACKAGES))
	$(call install_missing,$(LEAN_TEST_PACKAGES),--no-install-recommends)
	@python3 -c "import openapi_spec_validator" 2>/dev/null || python3 -m pip install -q openapi-spec-validator \
	  || python3 -m pip install -q --break-system-packages openapi-spec-validator
	@command -v schemathesis >/dev/null || python3 -m pip install -q schemathesis \
	  || python3 -m pip install -q --break-system-packages schemathesis

build: deps
	$(SWIFT) build -c release

run: build
	@if [ ! -f "$(DATA)/signing-key" ]; then \
	  .build/release/keyglass-server init --data "$(DATA)" --origin "$(ORIGIN)"; \
	fi
	@echo "Verifier key: $$(cat $(DATA)/verifier-key)   Publish token file: $(DATA)/publish-token"
	.build/release/keyglass-server serve --data "$(DATA)" --host "$(HOST)" --port "$(PORT)"

# Only the verification core is linted: it is what an auditor reads, so Sources/KeyglassCore/.swift-format
# is strict (every public declaration documented) and any finding fails. The root .swift-format holds
# the same settings for the rest of the tree, but the other modules are not linted yet: formatting the
# whole tree is a separate change (Spec/decisions.md).
lint:
	@command -v $(SWIFT_FORMAT) >/dev/null || { echo "swift-format not found: it ships with the Swift 6 toolchain (<toolchain>/usr/bin/swift-format); put it on PATH or run make SWIFT_FORMAT=/path/to/swift-format"; exit 1; }
	$(SWIFT_FORMAT) lint --strict -r Sources/KeyglassCore

test: test-deps lint
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	@echo "== the crash, evil-log and interop suites again, on PostgreSQL (KEYGLASS_TEST_STORAGE=postgres)"
	KEYGLASS_TEST_STORAGE=postgres $(SWIFT) test --skip-build --filter 'CrashSafetyTests/testSIGKILL|EvilLogTests|GoInteropTests'
	python3 Spec/check_openapi.py
	Spec/fuzz_openapi.sh .build/debug
	Spec/fuzz_directory.sh .build/debug
	python3 Spec/reference/keyglass_v2_reference.py --check
	python3 Spec/reference/device_reference.py --repo --check
	python3 Spec/reference/lookup_reference.py --check
	promtool check rules Deploy/prometheus/keyglass-alerts.yml
	cd Deploy/prometheus && promtool test rules keyglass-alerts.test.yml

# Benchmarks and soak need wrk and the release build; not part of `make test`.
bench-deps: test-deps
	$(call install_missing,wrk curl)

bench: bench-deps
	$(SWIFT) build -c release
	Benchmarks/run.sh

soak: bench-deps
	$(SWIFT) build -c release
	Benchmarks/soak.sh

clean:
	rm -rf .build
