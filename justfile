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
