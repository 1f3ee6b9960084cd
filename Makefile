# The front door. `make local-up` runs everything locally; `make test` runs every test.
.PHONY: local-up local-down local-status test unit bench build lint fmt

local-up:        ## Install (first time), start and provision the local stack; serve the functions
	@tools/local/stack.sh up

local-down:      ## Stop exactly what local-up started
	@tools/local/stack.sh down

local-status:
	@tools/local/stack.sh status

test:            ## All tests against the real local services (started and stopped if needed)
	@tools/local/stack.sh test

unit:            ## Unit tests only: no services needed
	cargo test --workspace --lib --bins

bench:           ## Benchmarks (the handler benchmark needs `make local-up`)
	cargo bench -p shared --bench verify_parse --bench matcher
	@tools/local/stack.sh up
	cargo run --release -p integration-tests --bin handler-bench
	cargo run -q -p oa -- --local rules apply examples/bakery-rules.yaml
	cargo run --release -p integration-tests --bin reply-bench
	cargo run --release -p integration-tests --bin segment-bench
	cargo run --release -p integration-tests --bin campaign-bench

ARCH ?= arm64
build:           ## Release artifacts for AWS (target/lambda/<function>/bootstrap); ARCH=arm64|x86-64
	PATH="$(CURDIR)/.local/venv/bin:$$PATH" cargo lambda build --release --$(ARCH) --package webhook --package keyword-reply --package tagger --package campaign --package multicast

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
