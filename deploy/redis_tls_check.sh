#!/bin/sh
# Redis TLS of prod-ha (components/cert-manager/redis-tls) on loopback, with the
# manifests' own start scripts: two data nodes and a sentinel with TLS, svc's gateway
# finding the primary through the sentinel, both over TLS, trusting the CA through
# REDIS_CA_FILE,
# as the component configures it. Then the CA and the certificates change under them,
# as when cert-manager renews them and the kubelet updates the mounted Secret. Passes
# when the data nodes present the new certificate with no restart, the sentinel comes
# back with it, replication holds, and the gateway, its connections cut, reconnects
# trusting the new CA with no restart.
#
#   deploy/redis_tls_check.sh SVC_BINARY      (needs redis-server, redis-cli, openssl)
set -eu
svc=$(realpath "$1")
scripts=$(realpath deploy/overlays/prod-ha/scripts)
work=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
fail() { echo "   FAIL $*"; for f in "$work"/*.log; do echo "--- $f"; tail -n 15 "$f"; done; exit 1; }
until_ok() { # seconds, what, command...: poll the command until it succeeds
  n=$(($1 * 5)); what=$2; shift 2
  while ! "$@" >/dev/null 2>&1; do n=$((n - 1)); [ $n -gt 0 ] || fail "$what"; sleep 0.2; done
  echo "   ok: $what"
}
issue() { # DIR CA-NAME: a CA, and a certificate for localhost it signs: the Secret's keys
  mkdir -p "$1"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$2" \
    -keyout "$1/ca.key" -out "$1/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$1/tls.key" -out "$1/tls.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$1/ext"
  openssl x509 -req -in "$1/tls.csr" -CA "$1/ca.crt" -CAkey "$1/ca.key" -CAcreateserial -days 2 \
    -extfile "$1/ext" -out "$1/tls.crt" 2>/dev/null
}
# The certificate a server presents: "$issuer_cmd$PORT | openssl x509 -noout -issuer".
issuer_cmd="echo | timeout 3 openssl s_client -connect 127.0.0.1:"
# The mounted Secret: a symlink swapped in one step, as the kubelet does.
mount_secret() { ln -sfn "$work/$1" "$work/tls.new" && mv -T "$work/tls.new" "$work/tls"; }

issue "$work/gen1" "svc redis CA 1"
issue "$work/gen2" "svc redis CA 2"
mount_secret gen1
node0=$(free_port); node1=$(free_port); sentinel=$(free_port); sentinel_tls=$(free_port); gateway=$(free_port)
export REDIS_PASSWORD="pw-$$" TLS_DIR="$work/tls" TLS_CHECK_INTERVAL=1 SENTINEL_TLS_PORT=$sentinel_tls
export REDIS_NODES="localhost:$node0 localhost:$node1" SENTINELS="localhost:$sentinel" MASTER_NAME=mymaster
start_node() { # port
  mkdir -p "$work/data-$1"
  SELF=localhost:$1 DATA_DIR="$work/data-$1" sh "$scripts/redis-node.sh" >>"$work/node-$1.log" 2>&1 &
  pids="$pids $!"
}
start_sentinel() {
  SELF=localhost:$sentinel QUORUM=1 CONFIG="$work/sentinel.conf" sh "$scripts/sentinel.sh" >>"$work/sentinel.log" 2>&1 &
  sentinel_pid=$!; pids="$pids $sentinel_pid"
}
cli() { redis-cli --tls --cacert "$work/tls/ca.crt" -a "$REDIS_PASSWORD" --no-auth-warning "$@"; }
# The same, as a command line for the sh -c of until_ok.
tls_cli_cmd="redis-cli --tls --cacert $work/tls/ca.crt -a $REDIS_PASSWORD --no-auth-warning"

echo "== Redis TLS on loopback: start"
start_node "$node0"
until_ok 10 "data node 0 answers over TLS" sh -c "$tls_cli_cmd -p $node0 ping | grep -q PONG"
if redis-cli -a "$REDIS_PASSWORD" --no-auth-warning -p "$node0" ping 2>/dev/null | grep -q PONG; then fail "data node 0 answers plain TCP"; fi
start_sentinel
until_ok 20 "the sentinel names the primary over TLS" sh -c "$tls_cli_cmd -p $sentinel_tls sentinel get-master-addr-by-name mymaster | grep -q localhost"
start_node "$node1"
until_ok 20 "data node 1 replicates the primary over TLS" sh -c "$tls_cli_cmd -p $node0 info replication | grep -q 'connected_slaves:1'"
mkdir -p "$work/svc-ca" && cp "$work/gen1/ca.crt" "$work/svc-ca/ca.crt"
( cd "$work" && exec env -i PATH=/usr/bin:/bin REDIS_SENTINELS="localhost:$sentinel_tls" REDIS_SENTINEL_TLS=true REDIS_MASTER_NAME=mymaster \
    REDIS_TLS=true REDIS_PASSWORD="$REDIS_PASSWORD" REDIS_SENTINEL_PASSWORD="$REDIS_PASSWORD" \
    REDIS_CA_FILE="$work/svc-ca/ca.crt" DRAIN_DELAY=0s "$svc" gateway --host 127.0.0.1 --port "$gateway" ) >"$work/gateway.log" 2>&1 &
gateway_pid=$!; pids="$pids $gateway_pid"
until_ok 20 "the gateway is ready through the sentinel, TLS to the primary" "$svc" healthcheck "http://127.0.0.1:$gateway/health/ready"
sh -c "$issuer_cmd$node0 2>/dev/null | openssl x509 -noout -issuer" | grep -q 'CA 1' || fail "data node 0 does not present the first certificate"

echo "== renewal: a new CA and certificates in the mounted Secret"
mount_secret gen2
cp "$work/gen2/ca.crt" "$work/svc-ca/.ca.crt.new" && mv "$work/svc-ca/.ca.crt.new" "$work/svc-ca/ca.crt"
for p in "$node0" "$node1"; do
  until_ok 10 "data node :$p presents the new certificate, not restarted" sh -c "$issuer_cmd$p 2>/dev/null | openssl x509 -noout -issuer | grep -q 'CA 2'"
done
until_ok 10 "the sentinel stops to load the new certificate" sh -c "! kill -0 $sentinel_pid"
start_sentinel     # the kubelet restarts its container
until_ok 20 "the sentinel is back over TLS with the new certificate" sh -c "$issuer_cmd$sentinel_tls 2>/dev/null | openssl x509 -noout -issuer | grep -q 'CA 2'"
cli -p "$node0" client kill type normal >/dev/null
# /api/status counts each request in Redis: a count that rises is a live connection.
counted() { python3 -c 'import json, sys, urllib.request as u
s = json.load(u.urlopen(sys.argv[1], timeout=3))
sys.exit(0 if s.get("redis_connected") is True and (s.get("total_requests") or 0) > int(sys.argv[2]) else 1)' \
  "http://127.0.0.1:$gateway/api/status" "$1"; }
before=$(python3 -c 'import json, sys, urllib.request as u; print(json.load(u.urlopen(sys.argv[1], timeout=3)).get("total_requests") or 0)' "http://127.0.0.1:$gateway/api/status")
until_ok 20 "the gateway reconnects trusting the new CA and counts in Redis again, not restarted" counted "$before"
kill -0 "$gateway_pid" || fail "the gateway exited"
# The primary takes writes only with a replica in sync (min-replicas-to-write 1).
until_ok 20 "replication holds across the renewal" sh -c "$tls_cli_cmd -p $node0 set svc:tls-check ok | grep -q OK && $tls_cli_cmd -p $node1 get svc:tls-check | grep -q ok"
grep -q "the renewed certificate is in use" "$work/node-$node0.log" || fail "data node 0 did not log the reload"
# The servers stopped, nothing of theirs may go on: a certificate watcher left behind
# would signal whatever process later gets the sentinel's old PID.
for p in $pids; do kill "$p" 2>/dev/null || true; done
until_ok 10 "no watcher outlives its server" sh -c "! ls -l /proc/[0-9]*/fd 2>/dev/null | grep -q '$work/'"
echo "redis tls: all checks passed"
