# TLS for the data nodes and sentinels (components/cert-manager/redis-tls), sourced
# by redis-node.sh and sentinel.sh. Without TLS_DIR every function here is a no-op.
#
#   TLS_DIR              the mounted cert-manager Secret: tls.crt, tls.key, ca.crt
#   TLS_CHECK_INTERVAL   seconds between looks at the files, default 30
#
# redis-server does not notice renewed files by itself. The kubelet replaces the
# Secret's files within a minute or two of cert-manager renewing it; tls_watch then
# makes the server load them again.
TLS_DIR=${TLS_DIR:-}
tls_cli=""
[ -z "$TLS_DIR" ] || tls_cli="--tls --cacert $TLS_DIR/ca.crt"

# tls_sentinels LIST: the sentinels' addresses to ask, their TLS port with TLS.
tls_sentinels() {
  if [ -z "$TLS_DIR" ]; then echo "$1"; return; fi
  for s in $1; do printf '%s ' "${s%:*}:${SENTINEL_TLS_PORT:-26380}"; done
}

tls_sum() {
  cat "$TLS_DIR/tls.crt" "$TLS_DIR/tls.key" "$TLS_DIR/ca.crt" 2>/dev/null | cksum
}

# tls_watch RELOAD...: in the background, run RELOAD each time the files change
# (retried at the next look while it fails). The caller then execs its server, which
# keeps the caller's PID: the watcher ends when that PID is gone, so it never outlives
# its server nor signals a PID the system has since given to another process.
tls_watch() {
  [ -n "$TLS_DIR" ] || return 0
  server=$$
  (
    last=$(tls_sum)
    while sleep "${TLS_CHECK_INTERVAL:-30}" && kill -0 "$server" 2>/dev/null; do
      now=$(tls_sum)
      [ "$now" != "$last" ] || continue
      if "$@"; then echo "tls: the renewed certificate is in use"; last=$now
      else echo "tls: could not load the renewed certificate; trying again"; fi
    done
  ) &
}

# A data node loads the files again at once, its clients' connections untouched:
# CONFIG SET of the tls-* paths rereads them even when the paths are the same.
# --insecure: the server still presents the old certificate, which the new CA in
# ca.crt may not have signed; this is a loopback connection to itself.
tls_reload_server() { # port
  timeout 5 redis-cli --tls --insecure -h 127.0.0.1 -p "$1" CONFIG SET \
    tls-cert-file "$TLS_DIR/tls.crt" tls-key-file "$TLS_DIR/tls.key" \
    tls-ca-cert-file "$TLS_DIR/ca.crt" | grep -q OK
}

# A sentinel cannot load new certificates while it runs (Sentinel has no CONFIG
# SET), so it stops and its container is restarted: a few seconds per sentinel. The
# sentinels wait 20 s per ordinal first (all three see the renewal at about the same
# time), so two of three, a quorum, are always up.
tls_restart_sentinel() { # pid
  ordinal=${SELF%%.*}; ordinal=${ordinal##*-}
  case $ordinal in *[!0-9]*|"") ordinal=0 ;; esac
  sleep $((ordinal * 20))
  echo "tls: restarting the sentinel to load the renewed certificate"
  kill -TERM "$1"
}
