#!/bin/sh
# Start one sentinel of the group (overlays/prod-ha). Its config file is written anew
# on every start (Sentinel rewrites it as it learns; it lives on an emptyDir): the
# primary it monitors is the one the other sentinels name, else the node that says it
# is the primary, else the first node, which then starts as the primary.
#
#   REDIS_PASSWORD   the group's password: data nodes and sentinels alike
#   SELF             this sentinel, default "$(hostname).redis-sentinel:26379"
#   REDIS_NODES      every data node, space-separated name:port
#   SENTINELS        every sentinel, space-separated name:port
#   MASTER_NAME      default mymaster; QUORUM default 2
#   CONFIG           the config file, default /sentinel/sentinel.conf
#   TLS_DIR          with TLS (tls.sh): the sentinels talk TLS to the data nodes and
#                    each other on SENTINEL_TLS_PORT (default 26380) and keep SELF's
#                    port in plain TCP for svc, which asks a sentinel without TLS
set -eu
. "$(dirname "$0")/tls.sh"
: "${REDIS_PASSWORD:?REDIS_PASSWORD is not set}"
SELF=${SELF:-$(hostname).redis-sentinel:26379}
MASTER_NAME=${MASTER_NAME:-mymaster}
QUORUM=${QUORUM:-2}
CONFIG=${CONFIG:-/sentinel/sentinel.conf}
export REDISCLI_AUTH="$REDIS_PASSWORD"

cli() { # host:port, command...
  hp=$1; shift
  # shellcheck disable=SC2086 # tls_cli is several words
  timeout 3 redis-cli --raw $tls_cli -h "${hp%:*}" -p "${hp##*:}" "$@" 2>/dev/null
}

primary=""
for s in $(tls_sentinels "$SENTINELS"); do
  [ "${s%:*}" = "${SELF%:*}" ] && continue
  addr=$(cli "$s" SENTINEL get-master-addr-by-name "$MASTER_NAME" | tr '\n' ' ') || continue
  set -- $addr
  if [ $# -eq 2 ]; then primary="$1:$2"; echo "sentinel $s names the primary: $primary"; break; fi
done
if [ -z "$primary" ]; then
  for n in $REDIS_NODES; do
    if [ "$(cli "$n" ROLE | head -n 1)" = master ]; then primary=$n; echo "$n is a primary"; break; fi
  done
fi
if [ -z "$primary" ]; then
  set -- $REDIS_NODES
  primary=$1
  echo "no sentinel and no node names a primary: monitoring $primary, which starts as one"
fi
# Sentinel refuses a config whose hosts do not resolve: wait for the pod's DNS name.
until getent hosts "${primary%:*}" >/dev/null; do
  echo "waiting for ${primary%:*} to resolve"; sleep 2
done

umask 077
announce_port=${SELF##*:}
[ -z "$TLS_DIR" ] || announce_port=${SENTINEL_TLS_PORT:-26380}
cat >"$CONFIG" <<CONF
port ${SELF##*:}
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip ${SELF%:*}
sentinel announce-port $announce_port
requirepass "$REDIS_PASSWORD"
sentinel sentinel-pass "$REDIS_PASSWORD"
sentinel monitor $MASTER_NAME ${primary%:*} ${primary##*:} $QUORUM
sentinel auth-pass $MASTER_NAME "$REDIS_PASSWORD"
sentinel down-after-milliseconds $MASTER_NAME 5000
sentinel failover-timeout $MASTER_NAME 60000
sentinel parallel-syncs $MASTER_NAME 1
CONF
if [ -n "$TLS_DIR" ]; then
  cat >>"$CONFIG" <<CONF
tls-port ${SENTINEL_TLS_PORT:-26380}
tls-cert-file $TLS_DIR/tls.crt
tls-key-file $TLS_DIR/tls.key
tls-ca-cert-file $TLS_DIR/ca.crt
tls-replication yes
tls-auth-clients no
CONF
fi
# exec keeps this shell's PID, so the watcher stops the sentinel itself.
tls_watch tls_restart_sentinel $$
exec redis-server "$CONFIG" --sentinel
