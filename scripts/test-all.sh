#!/usr/bin/env bash
# Every test: the Rust workspace, then the ode_rs Python package (crates/ode-py/tests/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
crates/ode-py/tests/run.sh
