# tilekit: the two commands.
#   make demo   set-up if needed, build, run the example kernels and show the results
#   make test   set-up if needed, run every test
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test deps build bench fmt clippy fuzz test-user-crate test-loss-large test-long

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --release

demo: deps
	$(CARGO) run --release -p tilekit-examples --features jit --bin demo
	$(CARGO) run --release -p tilekit-examples --features jit --bin gpu_targets

# The test binaries share compiled kernels through the compile cache (codegen/src/cache.rs; its
# key holds the codegen sources' hash, so an edited lowering misses): the library sweeps compile
# every variant for every target once, not once per binary.
test: deps
	@mkdir -p target
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet
	TILEKIT_CACHE_DIR="$(CURDIR)/target/kernel-cache" $(CARGO) test --workspace --no-fail-fast 2>&1 | tee target/test-output.log | grep -v '^test .* ok$$' ; \
	  status=$${PIPESTATUS[0]}; scripts/test-summary.sh target/test-output.log; exit $$status

# Every fuzz harness (tests/src/fuzz) for SECONDS of wall-clock time in all, two at a time, in
# release mode; prints the counts and each failure's reproducer, fails if anything failed.
SECONDS ?= 600
fuzz: deps
	$(CARGO) run --release -p tilekit-tests --bin fuzz -- --seconds $(SECONDS)

# A crate outside the workspace (runtime/tests/user_crate) built offline against it: the
# one-line `tilekit` command over its kernels and its snapshot tests (an ignored test: minutes).
test-user-crate: deps
	$(CARGO) test -p tilekit --test all -- user_crate --ignored

# Cross-entropy at the vocabularies of LLaMA-3 (128256) and Qwen (151936), and the fused linear
# cross-entropy at GPT-2's and Qwen's, on the interpreter and the emulator (ignored tests: minutes).
test-loss-large: deps
	$(CARGO) test -p tilekit --test all -- loss:: linear_ce:: --ignored

# The attention matrix at long lengths (1000 and 4097: forward features, f16, gradients) on the
# interpreter (ignored tests: minutes); `make test` keeps lengths <= 130 plus one long case per
# head dim.
test-long: deps
	$(CARGO) test -p tilekit-tests --test all -- dsl_attention_long:: --ignored

bench: deps
	$(CARGO) bench -p tilekit-tests --bench interp_gemm

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets
