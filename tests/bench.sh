#!/usr/bin/env bash
# Benchmarks: installs what they need when missing, builds the release binary, then
# runs tests/bench.py (gateway), tests/bench_worker.py, tests/bench_dashboard.py and
# tests/bench_load.py (svc load against wrk). Extra arguments go to each.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/need.sh redis-server=redis-server nginx=nginx-light wrk=wrk
cargo build --release --locked
python3 tests/bench.py "$@"
python3 tests/bench_worker.py "$@"
python3 tests/bench_dashboard.py "$@"
python3 tests/bench_load.py "$@"
