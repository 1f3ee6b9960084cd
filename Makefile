# The front door. `make local-up` runs everything locally; `make test` runs every test.
.PHONY: local-up local-down local-status test unit fuzz bench build deploy destroy lint fmt

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

# No nightly toolchain here (cargo-fuzz needs one): the same property tests `make test` runs with
# 256 cases each, run with many more. Cases a property: FUZZ_CASES (default 50000).
FUZZ_CASES ?= 50000
fuzz:            ## Every parser's property tests with FUZZ_CASES cases each (no services needed)
	PROPTEST_CASES=$(FUZZ_CASES) cargo test -p shared --test parsers --test webhook_properties

bench:           ## Benchmarks (the handler benchmark needs `make local-up`)
	cargo bench -p shared --bench verify_parse --bench matcher
	@tools/local/stack.sh up
	cargo run --release -p integration-tests --bin handler-bench
	cargo run -q -p oa -- --local rules apply examples/bakery-rules.yaml
	cargo run --release -p integration-tests --bin reply-bench
	cargo run --release -p integration-tests --bin segment-bench
	cargo run --release -p integration-tests --bin campaign-bench

# Set on the command line only (an ARCH or ENV left in the shell's environment is not taken).
ARCH =
build:           ## Release artifacts for AWS (target/lambda/<function>/bootstrap); ARCH=arm64 (default)|x86-64
	@tools/local/stack.sh build $(or $(ARCH),arm64)

# The environment of infra/samconfig.toml to deploy: staging (stack oa-staging) or prod (oa-prod).
ENV = staging
deploy:          ## Build for the stack's architecture and deploy ENV (guided the first time); needs the secret <stack>/line (oa secrets put)
	@ARCH=$(ARCH) infra/deploy.sh deploy $(ENV)

destroy:         ## Delete ENV's stack (sam delete); its tables are kept
	@infra/deploy.sh destroy $(ENV)

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
