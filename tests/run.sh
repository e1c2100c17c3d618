#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the tools the tests need when
# missing, then `cargo test`. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/need.sh redis-server=redis-server promtool=prometheus prometheus=prometheus chromium=chromium chromedriver=chromium-driver script=bsdutils openssl=openssl
exec cargo test --locked "$@"
