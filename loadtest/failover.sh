#!/usr/bin/env bash
# Runs `understudy-loadtest failover` against a real vendor: starts sockudo (the Pusher-compatible
# server of ../shared/VENDORS.md §5.2) behind a TLS terminator (stunnel4, with a CA and a
# certificate for 127.0.0.1 made by openssl for the run, as hosted vendors are only reached over
# TLS) and a release understudy forwarding to it over TLS (the CA given as
# UNDERSTUDY_VENDOR_CA_FILE), all on loopback ports of their own, waits until the route says
# `vendor`, runs the scenario (which SIGSTOPs and SIGCONTs sockudo, behind the terminator), and
# cleans up. FAILOVER_TLS=0 forwards to sockudo's plain port instead. Usage:
#   loadtest/failover.sh OUT_DIR [failover options...]
# e.g.
#   loadtest/failover.sh artifacts/failover-1 --subscribers 500 --rate 100 --duration 30 \
#     --hang-at 10 --resume-at 20
# The run's human report goes to OUT_DIR/run.txt, its JSON line to OUT_DIR/result.json, the
# servers' logs next to them. Ports: FAILOVER_PORT (18580), FAILOVER_ADMIN_PORT (19590),
# FAILOVER_VENDOR_PORT (16101, plain), FAILOVER_VENDOR_TLS_PORT (16102, the terminator).
# SOCKUDO defaults to the binary scripts/test installs; stunnel4 and openssl are Debian packages.
set -euo pipefail

OUT=${1:?usage: loadtest/failover.sh OUT_DIR [failover options...]}
shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${FAILOVER_PORT:-18580}
ADMIN=${FAILOVER_ADMIN_PORT:-19590}
VPORT=${FAILOVER_VENDOR_PORT:-16101}
TPORT=${FAILOVER_VENDOR_TLS_PORT:-16102}
TLS=${FAILOVER_TLS:-1}
SOCKUDO=${SOCKUDO:-$HOME/.cache/understudy/sockudo-5.2.0/bin/sockudo}
KEY=failover-publisher-key
ADMIN_TOKEN=failover-admin-token-0123456789
APP_ID=lt-app
APP_KEY=lt-app-key
APP_SECRET=lt-app-secret
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

[ -x "$SOCKUDO" ] || { echo "no sockudo at $SOCKUDO (scripts/test installs it)" >&2; exit 2; }
if [ "$TLS" = 1 ]; then
  command -v stunnel4 >/dev/null && command -v openssl >/dev/null ||
    { echo "the TLS terminator needs stunnel4 and openssl: apt-get install stunnel4 openssl (or FAILOVER_TLS=0)" >&2; exit 2; }
fi

if [ -z "${FAILOVER_NO_BUILD:-}" ]; then
  cargo build --release --manifest-path "$ROOT/Cargo.toml" -p understudy -p understudy-loadtest >&2
fi
# Private copies: a rebuild during the run must not swap the binaries under it.
BIN="$OUT/bin"
mkdir -p "$BIN"
cp "$ROOT/target/release/understudy" "$ROOT/target/release/understudy-loadtest" "$BIN/"

port_free() {
  ! ss -Hltn "( sport = :$1 )" | grep -q .
}
for p in "$PORT" "$ADMIN" "$VPORT" $([ "$TLS" = 1 ] && echo "$TPORT"); do
  port_free "$p" || { echo "port $p is taken; set FAILOVER_*PORT" >&2; exit 2; }
done

VENDOR_PID=
SERVER_PID=
TLS_PID=
cleanup() {
  if [ -n "$VENDOR_PID" ]; then
    kill -CONT "$VENDOR_PID" 2>/dev/null || true
  fi
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    # SIGTERM drains for up to server.shutdown_timeout_ms (10 s); wait for it.
    kill -TERM "$SERVER_PID"
    for _ in $(seq 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  if [ -n "$VENDOR_PID" ] && kill -0 "$VENDOR_PID" 2>/dev/null; then
    kill -TERM "$VENDOR_PID"
    for _ in $(seq 50); do kill -0 "$VENDOR_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$VENDOR_PID" 2>/dev/null || true
  fi
  if [ -n "$TLS_PID" ] && kill -0 "$TLS_PID" 2>/dev/null; then
    kill -TERM "$TLS_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# sockudo reads config/ from its working directory: run it from an empty one.
VDIR="$OUT/sockudo"
mkdir -p "$VDIR"
(
  cd "$VDIR"
  exec env HOST=127.0.0.1 PORT="$VPORT" METRICS_ENABLED=false METRICS_HOST=127.0.0.1 \
    SOCKUDO_DEFAULT_APP_ID="$APP_ID" SOCKUDO_DEFAULT_APP_KEY="$APP_KEY" \
    SOCKUDO_DEFAULT_APP_SECRET="$APP_SECRET" \
    SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB=10 SOCKUDO_DEFAULT_APP_MAX_EVENT_BATCH_SIZE=10 \
    SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=1000000 \
    SOCKUDO_ABLY_COMPAT_ENABLED=false PUSH_ALLOW_MEMORY_DRIVERS=true RATE_LIMITER_ENABLED=false \
    NO_COLOR=1 "$SOCKUDO"
) >"$OUT/sockudo.log" 2>&1 &
VENDOR_PID=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$VPORT/up" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$VPORT/up" >/dev/null || { echo "sockudo did not start; see $OUT/sockudo.log" >&2; exit 2; }

VENDOR_URL="pusher://$APP_KEY:$APP_SECRET@127.0.0.1:$VPORT/$APP_ID?tls=false"
CA_FILE=
if [ "$TLS" = 1 ]; then
  # A CA and a server certificate for 127.0.0.1 (IP SAN) made for this run; stunnel terminates
  # TLS with it and understudy trusts the CA.
  TLSDIR="$OUT/tls"
  mkdir -p "$TLSDIR"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TLSDIR/ca.key" -out "$TLSDIR/ca.pem" -days 2 \
    -subj "/CN=understudy loadtest CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$TLSDIR/server.key" -out "$TLSDIR/server.csr" \
    -subj "/CN=127.0.0.1" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' \
    >"$TLSDIR/server.ext"
  openssl x509 -req -in "$TLSDIR/server.csr" -CA "$TLSDIR/ca.pem" -CAkey "$TLSDIR/ca.key" \
    -CAcreateserial -out "$TLSDIR/server.pem" -days 2 -extfile "$TLSDIR/server.ext" 2>/dev/null
  cat >"$TLSDIR/stunnel.conf" <<CONF
foreground = yes
pid =
[vendor]
accept = 127.0.0.1:$TPORT
connect = 127.0.0.1:$VPORT
cert = $TLSDIR/server.pem
key = $TLSDIR/server.key
CONF
  stunnel4 "$TLSDIR/stunnel.conf" >"$OUT/stunnel.log" 2>&1 &
  TLS_PID=$!
  for _ in $(seq 50); do
    ! port_free "$TPORT" && break
    sleep 0.1
  done
  port_free "$TPORT" && { echo "stunnel did not listen on :$TPORT; see $OUT/stunnel.log" >&2; exit 2; }
  VENDOR_URL="pusher://$APP_KEY:$APP_SECRET@127.0.0.1:$TPORT/$APP_ID"
  CA_FILE="$TLSDIR/ca.pem"
fi

AUDIT="$OUT/audit"
mkdir -p "$AUDIT"
UNDERSTUDY_LISTEN="127.0.0.1:$PORT" UNDERSTUDY_ADMIN_LISTEN="127.0.0.1:$ADMIN" \
UNDERSTUDY_SUBSCRIBE_AUTH=none UNDERSTUDY_PUBLISHER_KEYS="$KEY" UNDERSTUDY_LOG=warn \
UNDERSTUDY_ADMIN_TOKEN="$ADMIN_TOKEN" UNDERSTUDY_AUDIT_DIR="$AUDIT" \
UNDERSTUDY_VENDOR_URL="$VENDOR_URL" UNDERSTUDY_VENDOR_CA_FILE="$CA_FILE" \
  "$BIN/understudy" serve >"$OUT/understudy.log" 2>&1 &
SERVER_PID=$!

# Wait for the vendor path: the canary must have proved it.
route=
for _ in $(seq 300); do
  route=$(curl -fs "http://127.0.0.1:$PORT/v1/route" 2>/dev/null | sed -n 's/.*"route":"\([a-z]*\)".*/\1/p' || true)
  [ "$route" = vendor ] && break
  sleep 0.1
done
[ "$route" = vendor ] || { echo "route is '$route', not vendor, after 30 s; see $OUT/understudy.log" >&2; exit 2; }
echo "sockudo pid $VENDOR_PID on :$VPORT$([ "$TLS" = 1 ] && echo " behind TLS on :$TPORT"), understudy pid $SERVER_PID on :$PORT (admin :$ADMIN); route vendor" >&2

rc=0
UNDERSTUDY_PUBLISHER_KEY="$KEY" UNDERSTUDY_ADMIN_TOKEN="$ADMIN_TOKEN" \
  timeout --signal=INT --kill-after=30 "${FAILOVER_TIMEOUT:-3600}" \
  "$BIN/understudy-loadtest" failover --url "http://127.0.0.1:$PORT" --server-pid "$SERVER_PID" \
  --vendor-pid "$VENDOR_PID" --admin "http://127.0.0.1:$ADMIN" "$@" \
  >"$OUT/run.txt" || rc=$?
cat "$OUT/run.txt"
tail -n 1 "$OUT/run.txt" >"$OUT/result.json"
echo "exit $rc; files in $OUT" >&2
exit "$rc"
