#!/usr/bin/env bash
# Runs the loom model tests of the ring core (tests/loom_ring.rs).
# Extra arguments go to the test binary's filter, e.g. `.ci/loom.sh overwrite`.
# Separate target dir: `--cfg loom` would otherwise invalidate the main build cache.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="${RUSTFLAGS:-} --cfg loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
# Models run in release for speed; they need no debuginfo.
export CARGO_PROFILE_RELEASE_DEBUG="${CARGO_PROFILE_RELEASE_DEBUG:-0}"
exec cargo test --release --no-default-features --test loom_ring -- "$@"
