#!/usr/bin/env bash
# Benchmarks: installs what they need when missing, builds the release binary, then
# runs tests/bench.py (gateway), tests/bench_worker.py, tests/bench_dashboard.py,
# tests/bench_page.py (the page at 1,000 targets in 20 groups: weight and render time),
# tests/bench_load.py (svc load against wrk), tests/bench_targets.py (1,000 targets on
# 3 workers; its Redis fill is examples/fill_targets.rs), tests/bench_notify.py (probe
# to webhook latency, 1,000 targets on 3 workers), tests/bench_blackbox.py (CPU per
# probe against the blackbox exporter and its Prometheus) and tests/bench_status.py (a
# status page and /api/health-check at 1,000 targets with a year of history). Extra
# arguments go to each.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/need.sh redis-server=redis-server nginx=nginx-light wrk=wrk prometheus=prometheus \
  prometheus-blackbox-exporter=prometheus-blackbox-exporter dnsmasq=dnsmasq-base
cargo build --release --locked --bins --example fill_targets
python3 tests/bench.py "$@"
python3 tests/bench_worker.py "$@"
python3 tests/bench_dashboard.py "$@"
python3 tests/bench_page.py "$@"
python3 tests/bench_load.py "$@"
python3 tests/bench_targets.py "$@"
python3 tests/bench_notify.py "$@"
python3 tests/bench_blackbox.py "$@"
python3 tests/bench_status.py "$@"
