#!/usr/bin/env bash
# The Python package's tests: builds the ode_rs wheel with maturin, installs it into a fresh
# venv and runs pytest. Without Python 3.9+ (or without PyPI for maturin/pytest/numpy) it skips
# with a message, unless ODE_REQUIRE_PYTHON=1 (CI), where it fails.
set -euo pipefail
cd "$(dirname "$0")/../../.."
WORK=target/ode-py
PY=${ODE_PYTHON:-python3}

skip() {
  if [ "${ODE_REQUIRE_PYTHON:-}" = 1 ]; then
    echo "python tests: $1 (ODE_REQUIRE_PYTHON=1, so this fails)" >&2
    exit 1
  fi
  echo "python tests skipped: $1 (set ODE_REQUIRE_PYTHON=1 to make this an error)" >&2
  exit 0
}

command -v "$PY" >/dev/null 2>&1 || skip "no $PY on PATH (set ODE_PYTHON)"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || skip "$PY is older than 3.9"
"$PY" -c 'import venv, ensurepip' 2>/dev/null || skip "$PY cannot make venvs (install python3-venv)"

t0=$(date +%s)
rm -rf "$WORK/venv" "$WORK/wheels"
mkdir -p "$WORK"
"$PY" -m venv "$WORK/venv"
VPY=$WORK/venv/bin/python
"$VPY" -m pip install --quiet --disable-pip-version-check -r crates/ode-py/tests/requirements.txt \
  || skip "cannot install maturin, pytest and numpy from PyPI"
echo "python tests: venv with maturin, pytest and numpy in $(( $(date +%s) - t0 ))s" >&2

# The dev profile raised to the test profile's opt-level 3: the dependencies then have the
# settings `cargo test` built them with and are reused from target/debug, and proc macros and
# build scripts stay at build-override's level. (A cdylib cannot be built with the test profile
# itself: maturin's `cargo rustc --profile test` makes a test harness of it.)
started=$(date +%s)
CARGO_PROFILE_DEV_OPT_LEVEL=3 \
  "$WORK/venv/bin/maturin" build --quiet -m crates/ode-py/Cargo.toml -i "$VPY" --out "$WORK/wheels"
"$VPY" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$WORK"/wheels/ode_rs-*.whl
echo "python tests: wheel built and installed in $(( $(date +%s) - started ))s" >&2

# The `ode` binary of `cargo test` for the equality test, when the caller has not built one.
[ -x target/debug/ode ] || [ -n "${ODE_BIN:-}" ] || cargo build --quiet --profile test -p ode-cli
[ -n "${ODE_BIN:-}" ] || { [ -x target/debug/ode ] && export ODE_BIN=$PWD/target/debug/ode; }

cd crates/ode-py/tests
"../../../$VPY" -m pytest -q "$@"
echo "python tests: whole stage in $(( $(date +%s) - t0 ))s" >&2
