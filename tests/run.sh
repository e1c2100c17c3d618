#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the tools the tests need when
# missing, then `cargo test`. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/need.sh redis-server=redis-server promtool=prometheus prometheus=prometheus chromium=chromium chromedriver=chromium-driver script=bsdutils openssl=openssl python3=python3 pip3=python3-pip \
  dnsmasq=dnsmasq-base prometheus-blackbox-exporter=prometheus-blackbox-exporter
# Real peers from PyPI, as MODULE=PACKAGE: an SMTP server for the email channel; a gRPC
# health server and a WebSocket server for the grpc:// and ws:// checks.
python_peers=(aiosmtpd=aiosmtpd grpc=grpcio grpc_health=grpcio-health-checking websockets=websockets)
missing=()
for pair in "${python_peers[@]}"; do
  python3 -c "import ${pair%%=*}" 2>/dev/null || missing+=("${pair#*=}")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then
    echo "installing: ${missing[*]}"
    python3 -m pip install -q "${missing[@]}" || python3 -m pip install -q --break-system-packages "${missing[@]}"
  else
    echo "missing: ${missing[*]}; install with: python3 -m pip install ${missing[*]}" >&2
    exit 1
  fi
fi
exec cargo test --locked "$@"
