# Benchmarks the release `csa`: prints a markdown table on stdout (see crates/csa-bench).
# Extra arguments go to csa-bench, e.g. `just bench --sizes 1000 --check`.
bench *ARGS:
    cargo build --release -p cli-sub-agent -p csa-bench
    target/release/csa-bench {{ARGS}}
