# The README's test command: the whole suite, with the fail points the reliability tests use.
test:
    cargo test --workspace --all-features

# What CI checks besides the tests: format, clippy with warnings denied (with and without the
# fail points), and the docs with warnings denied.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy --workspace --all-targets --all-features -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

# Benchmarks the release `csa`: prints a markdown table on stdout (see crates/csa-bench).
# Extra arguments go to csa-bench, e.g. `just bench --sizes 1000 --check`.
bench *ARGS:
    cargo build --release -p cli-sub-agent -p csa-bench
    target/release/csa-bench {{ARGS}}

# Runs the reliability tests' short forms (crash points, faults, stress, bad-input corpus,
# property tests) and prints the table that docs/reliability.md records.
reliability:
    rm -rf target/reliability
    CSA_RELIABILITY_REPORT="$PWD/target/reliability" cargo test --workspace --all-features
    @echo "reliability table, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)'):"
    @cargo run -q -p csa-reliability -- target/reliability

# The 16-process stress test (docs/reliability.md, "Races") for DURATION (`just stress 10m`);
# replay a run's random choices with CSA_STRESS_SEED=<the seed it printed>.
stress DURATION="20s":
    CSA_STRESS_DURATION={{DURATION}} cargo test -p cli-sub-agent --all-features --test cli stress -- --nocapture

# Fuzzes one csa-session parser with cargo-fuzz for SECS seconds (docs/reliability.md, "Bad
# input"); needs a nightly toolchain and `cargo install cargo-fuzz`. Not part of CI. Targets:
# state, result, small_files, run_record, liveness_files, active_record (`just fuzz all` runs
# each in turn). Starts from the committed seeds (fuzz/seeds/TARGET); the growing corpus is
# fuzz/corpus/TARGET and findings go to fuzz/artifacts/TARGET (both ignored by git).
fuzz TARGET="state" SECS="60":
    #!/usr/bin/env sh
    set -eu
    if [ "{{TARGET}}" = all ]; then targets=$(cargo +nightly fuzz list --fuzz-dir fuzz); else targets="{{TARGET}}"; fi
    for t in $targets; do
        mkdir -p "fuzz/corpus/$t"
        cargo +nightly fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- -max_total_time={{SECS}} -rss_limit_mb=512
    done
