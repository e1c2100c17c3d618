#!/bin/sh
# Start one Redis data node of the Sentinel group (overlays/prod-ha).
#
# The node follows whatever primary the sentinels name. When no sentinel answers
# (first start, or every sentinel restarting) it follows a node that says it is the
# primary; when there is none either, node 0 starts as the primary and the others
# replicate from it. Hosts are name:port, so the same script runs on loopback.
#
#   REDIS_PASSWORD   the group's password (clients, replication, sentinels)
#   SELF             this node, default "$(hostname).redis-node:6379"
#   REDIS_NODES      every data node, space-separated name:port
#   SENTINELS        every sentinel, space-separated name:port
#   MASTER_NAME      the group's name in the sentinels, default mymaster
#   DATA_DIR         where the append-only file lives, default /data
#   TLS_DIR          with TLS (tls.sh): TLS only, the sentinels asked on their TLS
#                    port (SENTINEL_TLS_PORT, default 26380)
set -eu
. "$(dirname "$0")/tls.sh"
: "${REDIS_PASSWORD:?REDIS_PASSWORD is not set}"
SELF=${SELF:-$(hostname).redis-node:6379}
MASTER_NAME=${MASTER_NAME:-mymaster}
DATA_DIR=${DATA_DIR:-/data}
export REDISCLI_AUTH="$REDIS_PASSWORD"

cli() { # host:port, command...
  hp=$1; shift
  # shellcheck disable=SC2086 # tls_cli is several words
  timeout 3 redis-cli --raw $tls_cli -h "${hp%:*}" -p "${hp##*:}" "$@" 2>/dev/null
}

primary=""
for s in $(tls_sentinels "$SENTINELS"); do
  addr=$(cli "$s" SENTINEL get-master-addr-by-name "$MASTER_NAME" | tr '\n' ' ') || continue
  set -- $addr
  if [ $# -eq 2 ]; then primary="$1:$2"; echo "sentinel $s names the primary: $primary"; break; fi
done
if [ -z "$primary" ]; then
  for n in $REDIS_NODES; do
    [ "$n" = "$SELF" ] && continue
    if [ "$(cli "$n" ROLE | head -n 1)" = master ]; then primary=$n; echo "no sentinel answered; $n is a primary"; break; fi
  done
fi
if [ -z "$primary" ]; then
  set -- $REDIS_NODES
  primary=$1
  echo "no sentinel answered and no node is a primary: $primary starts as the primary"
fi

if [ -n "$TLS_DIR" ]; then
  # TLS only; clients need no certificate of their own (they log in with the password).
  set -- --port 0 --tls-port "${SELF##*:}" \
    --tls-cert-file "$TLS_DIR/tls.crt" --tls-key-file "$TLS_DIR/tls.key" \
    --tls-ca-cert-file "$TLS_DIR/ca.crt" --tls-replication yes --tls-auth-clients no
else
  set -- --port "${SELF##*:}"
fi
set -- redis-server "$@" \
  --dir "$DATA_DIR" \
  --requirepass "$REDIS_PASSWORD" \
  --masterauth "$REDIS_PASSWORD" \
  --replica-announce-ip "${SELF%:*}" \
  --replica-announce-port "${SELF##*:}" \
  --appendonly yes \
  --appendfsync everysec \
  --maxmemory 384mb \
  --maxmemory-policy noeviction \
  --min-replicas-to-write 1 \
  --min-replicas-max-lag 10
if [ "$primary" != "$SELF" ]; then
  set -- "$@" --replicaof "${primary%:*}" "${primary##*:}"
fi
echo "starting as $([ "$primary" = "$SELF" ] && echo primary || echo "replica of $primary")"
tls_watch tls_reload_server "${SELF##*:}"
exec "$@"
