#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the tools the tests need when
# missing, then `cargo test`. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/need.sh redis-server=redis-server promtool=prometheus prometheus=prometheus chromium=chromium chromedriver=chromium-driver script=bsdutils openssl=openssl python3=python3 pip3=python3-pip
# The email channel's tests run a real SMTP server: aiosmtpd from PyPI.
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  if [[ $(id -u) == 0 ]]; then
    echo "installing: aiosmtpd"
    python3 -m pip install -q aiosmtpd || python3 -m pip install -q --break-system-packages aiosmtpd
  else
    echo "missing: aiosmtpd; install with: python3 -m pip install aiosmtpd" >&2
    exit 1
  fi
fi
exec cargo test --locked "$@"
