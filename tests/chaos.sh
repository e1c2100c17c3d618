#!/usr/bin/env bash
# The chaos suite (tests/chaos.py): installs what it needs when missing, builds the
# release binary unless it is there already, then runs every scenario (or --only ...).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/need.sh redis-server=redis-server redis-cli=redis-tools nginx=nginx-light wrk=wrk
[[ -x target/release/svc && ${CHAOS_REBUILD:-1} == 0 ]] || cargo build --release --locked --bin svc
exec python3 tests/chaos.py "$@"
