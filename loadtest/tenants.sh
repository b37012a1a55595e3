#!/usr/bin/env bash
# Tenants sharing one vendor (issue 14's acceptance): tenant A floods at 10x its publish quota
# while tenant B publishes steadily, against a baseline run without A. Starts, on loopback ports
# of their own: sockudo (the Pusher-compatible vendor of ../shared/VENDORS.md §5.2, its rate
# limits off), a delay relay in front of it (`understudy-loadtest tenants delay`), and a release
# understudy with tenants `a` (channels a.*) and `b` (channels b.*) forwarding to the vendor
# through the relay. understudy is started afresh for each run; the vendor and relay stay.
#
# Why a relay: sockudo on loopback answers a batch in about a millisecond, so a lane could send
# far more than any flood accepted under a quota and its queue would never fill. The relay holds
# every request understudy sends to the vendor for TENANTS_VENDOR_DELAY_MS (100), and the lane has
# TENANTS_IN_FLIGHT (4) realtime requests of at most 10 events (Pusher's batch), so the lane sends
# at most 4 x 10 / 0.1 s = 400 events/s: below A's quota (TENANTS_A_QUOTA, 500/s), so A's lane
# fills and sheds even once A is held to its quota, and far below A's flood (10 x the quota). The
# subscribers read the vendor directly, not through the relay. The health thresholds are far above
# the delay (slow p99 1 s), so the vendor stays the route.
#
# Each run: B publishes TENANTS_B_RATE (50) events/s on one channel for TENANTS_DURATION (20) s,
# subscribed on understudy's own WebSocket and on the vendor's (Pusher protocol 7, private
# channel signed with the app secret); A floods with batches of 50 over 64 channels. Reported:
# B's publish p50/p99, delivery p50/p99 on each path, lost, duplicated, out of order; A's events
# accepted and refused with 429 (the tenant quota); the vendor's largest realtime queue and its
# per-tenant lane counters. Each of TENANTS_RUNS (3) rounds runs, in turn: without A (baseline),
# with A flooding (flood), and, unless TENANTS_CONTROL=0, with A flooding a second understudy
# instead (control): B's figures then carry what the flood costs the machine (the load tool, the
# other server, the kernel) but not what it costs B's server. The table gives medians and ratios.
# Usage:
#   loadtest/tenants.sh OUT_DIR
# Files: OUT_DIR/{baseline,flood,control}-N.txt (report), .json (summary line), the servers' logs.
# Ports: TENANTS_PORT (18680), TENANTS_ADMIN_PORT (19690), TENANTS_VENDOR_PORT (16201, sockudo),
# TENANTS_RELAY_PORT (16202), TENANTS_CONTROL_PORT (18690), TENANTS_CONTROL_ADMIN_PORT (19691). SOCKUDO defaults to the binary scripts/test installs;
# TENANTS_BIN_DIR runs prebuilt binaries instead of building release ones.
set -euo pipefail

OUT=${1:?usage: loadtest/tenants.sh OUT_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${TENANTS_PORT:-18680}
ADMIN=${TENANTS_ADMIN_PORT:-19690}
VPORT=${TENANTS_VENDOR_PORT:-16201}
RPORT=${TENANTS_RELAY_PORT:-16202}
DELAY_MS=${TENANTS_VENDOR_DELAY_MS:-100}
IN_FLIGHT=${TENANTS_IN_FLIGHT:-4}
A_QUOTA=${TENANTS_A_QUOTA:-500}
A_RATE=$((A_QUOTA * 10))
B_RATE=${TENANTS_B_RATE:-50}
DURATION=${TENANTS_DURATION:-20}
RUNS=${TENANTS_RUNS:-3}
CONTROL=${TENANTS_CONTROL:-1}
CPORT=${TENANTS_CONTROL_PORT:-18690}
CADMIN=${TENANTS_CONTROL_ADMIN_PORT:-19691}
SOCKUDO=${SOCKUDO:-$HOME/.cache/understudy/sockudo-5.2.0/bin/sockudo}
ADMIN_TOKEN=tenants-admin-token-0123456789
export TENANT_A_KEY=tenant-a-publisher-key-0123
export TENANT_B_KEY=tenant-b-publisher-key-0123
APP_ID=lt-app
APP_KEY=lt-app-key
export UNDERSTUDY_PUSHER_SECRET=lt-app-secret-0123456789
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

[ -x "$SOCKUDO" ] || { echo "no sockudo at $SOCKUDO (scripts/test installs it)" >&2; exit 2; }
# TENANTS_BIN_DIR: take understudy and understudy-loadtest from there instead of building.
SRC_BIN=${TENANTS_BIN_DIR:-}
if [ -z "$SRC_BIN" ]; then
  cargo build --release --manifest-path "$ROOT/Cargo.toml" -p understudy -p understudy-loadtest >&2
  SRC_BIN="$ROOT/target/release"
fi
# Private copies: a rebuild during the run must not swap the binaries under it.
BIN="$OUT/bin"
mkdir -p "$BIN"
cp "$SRC_BIN/understudy" "$SRC_BIN/understudy-loadtest" "$BIN/"

port_free() {
  ! ss -Hltn "( sport = :$1 )" | grep -q .
}
for p in "$PORT" "$ADMIN" "$VPORT" "$RPORT" "$CPORT" "$CADMIN"; do
  port_free "$p" || { echo "port $p is taken; set TENANTS_*PORT" >&2; exit 2; }
done

VENDOR_PID=
RELAY_PID=
SERVER_PID=
stop() { # pid, tenths of a second to wait after SIGTERM
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
  kill -TERM "$1"
  for _ in $(seq "$2"); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
  stop "$SERVER_PID" 150
  stop "$RELAY_PID" 10
  stop "$VENDOR_PID" 50
}
trap cleanup EXIT

# sockudo reads config/ from its working directory: run it from an empty one.
VDIR="$OUT/sockudo"
mkdir -p "$VDIR"
(
  cd "$VDIR"
  exec env HOST=127.0.0.1 PORT="$VPORT" METRICS_ENABLED=false METRICS_HOST=127.0.0.1 \
    SOCKUDO_DEFAULT_APP_ID="$APP_ID" SOCKUDO_DEFAULT_APP_KEY="$APP_KEY" \
    SOCKUDO_DEFAULT_APP_SECRET="$UNDERSTUDY_PUSHER_SECRET" \
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

"$BIN/understudy-loadtest" tenants delay --listen "127.0.0.1:$RPORT" \
  --upstream "127.0.0.1:$VPORT" --delay-ms "$DELAY_MS" >"$OUT/relay.log" 2>&1 &
RELAY_PID=$!
for _ in $(seq 50); do ! port_free "$RPORT" && break; sleep 0.1; done
port_free "$RPORT" && { echo "the delay relay did not listen on :$RPORT; see $OUT/relay.log" >&2; exit 2; }

cat >"$OUT/understudy.toml" <<CONF
[vendors]
realtime_in_flight = $IN_FLIGHT

[[tenants]]
id = "a"
channels = ["a.*"]
publisher_keys = ["$TENANT_A_KEY"]
publish_per_second = $A_QUOTA

[[tenants]]
id = "b"
channels = ["b.*"]
publisher_keys = ["$TENANT_B_KEY"]
CONF

launch() { # log name, port, admin port: starts an understudy in the background
  mkdir -p "$OUT/audit-$1"
  env UNDERSTUDY_LISTEN="127.0.0.1:$2" UNDERSTUDY_ADMIN_LISTEN="127.0.0.1:$3" \
  UNDERSTUDY_SUBSCRIBE_AUTH=none UNDERSTUDY_LOG=warn UNDERSTUDY_ADMIN_TOKEN="$ADMIN_TOKEN" \
  UNDERSTUDY_AUDIT_DIR="$OUT/audit-$1" \
  UNDERSTUDY_VENDOR_URL="pusher://$APP_KEY:$UNDERSTUDY_PUSHER_SECRET@127.0.0.1:$RPORT/$APP_ID?tls=false" \
    "$BIN/understudy" serve --config "$OUT/understudy.toml" >"$OUT/understudy-$1.log" 2>&1 &
}

start_server() { # log name
  launch "$1" "$PORT" "$ADMIN"
  SERVER_PID=$!
  # Wait for the vendor path: the canary must have proved it.
  local route=
  for _ in $(seq 300); do
    route=$(curl -fs "http://127.0.0.1:$PORT/v1/route" 2>/dev/null | sed -n 's/.*"route":"\([a-z]*\)".*/\1/p' || true)
    [ "$route" = vendor ] && break
    sleep 0.1
  done
  [ "$route" = vendor ] || { echo "route is '$route', not vendor, after 30 s; see $OUT/understudy-$1.log" >&2; exit 2; }
}

rc=0
# A second understudy for the control run: A floods it while B uses the first, so the control
# shows what the flood costs the machine (the load tool, the other server) apart from the server.
CONTROL_PID=
start_control() {
  launch control-sink "$CPORT" "$CADMIN"
  CONTROL_PID=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$CPORT/v1/route" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "the control sink did not start; see $OUT/understudy-control-sink.log" >&2; exit 2
}
trap 'stop "$CONTROL_PID" 150; cleanup' EXIT

MODES=(baseline flood)
[ "$CONTROL" = 1 ] && MODES+=(control)
for i in $(seq "$RUNS"); do
  for mode in "${MODES[@]}"; do
    run="$mode-$i"
    start_server "$run"
    a_rate=0
    a_url=()
    [ "$mode" != baseline ] && a_rate=$A_RATE
    if [ "$mode" = control ]; then
      start_control
      a_url=(--a-url "http://127.0.0.1:$CPORT")
    fi
    echo "$run: understudy pid $SERVER_PID on :$PORT, vendor :$VPORT behind a ${DELAY_MS} ms relay on :$RPORT; A at $a_rate/s${a_url:+ on a second understudy}, B at $B_RATE/s for $DURATION s" >&2
    UNDERSTUDY_ADMIN_TOKEN="$ADMIN_TOKEN" timeout --signal=INT --kill-after=30 $((DURATION + 120)) \
      "$BIN/understudy-loadtest" tenants run --url "http://127.0.0.1:$PORT" \
      --admin "http://127.0.0.1:$ADMIN" --vendor "127.0.0.1:$VPORT" --app-key "$APP_KEY" \
      --a-rate "$a_rate" "${a_url[@]}" --b-rate "$B_RATE" --duration "$DURATION" \
      >"$OUT/$run.txt" || rc=$?
    cat "$OUT/$run.txt"
    tail -n 1 "$OUT/$run.txt" >"$OUT/$run.json"
    stop "$SERVER_PID" 150
    SERVER_PID=
    stop "$CONTROL_PID" 150
    CONTROL_PID=
  done
done

python3 - "$OUT" "$RUNS" "${MODES[@]}" <<'PY'
import json, statistics, sys
out, runs, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
summ = {m: [json.load(open(f"{out}/{m}-{i}.json")) for i in range(1, runs + 1)] for m in modes}
rows = [
    ("B publish p50 ms", lambda s: s["b_publish"]["p50_us"]),
    ("B publish p99 ms", lambda s: s["b_publish"]["p99_us"]),
    ("B own WS delivery p50 ms", lambda s: s["b_own"]["latency"]["p50_us"]),
    ("B own WS delivery p99 ms", lambda s: s["b_own"]["latency"]["p99_us"]),
    ("B vendor delivery p50 ms", lambda s: s["b_vendor"]["latency"]["p50_us"]),
    ("B vendor delivery p99 ms", lambda s: s["b_vendor"]["latency"]["p99_us"]),
]
names = {"baseline": "without A", "flood": "A flooding", "control": "A elsewhere"}
print(f"medians of {runs} run(s), modes alternating")
head = f"{'':28}" + "".join(f"{names[m]:>12}" for m in modes) + f"{'flood/base':>11}"
if "control" in modes:
    head += f"{'ctrl/base':>10}"
print(head)
for name, get in rows:
    med = {m: statistics.median(get(s) for s in summ[m]) for m in modes}
    line = f"{name:28}" + "".join(f"{med[m] / 1000:>12.2f}" for m in modes)
    for m in ("flood", "control"):
        if m in modes:
            line += f"{(med[m] / med['baseline'] if med['baseline'] else 0):>10.2f}x"
    print(line)
    print(f"{'  each run':28}" + "".join(f"{','.join(f'{get(s) / 1000:.1f}' for s in summ[m]):>12}" for m in modes))
for m in modes:
    for i, s in enumerate(summ[m], 1):
        print(f"{names[m]} {i}: B accepted {s['b_accepted']}/{s['b_published']}, "
              f"own lost {s['b_own']['lost']} dup {s['b_own']['duplicated']}, "
              f"vendor lost {s['b_vendor']['lost']} dup {s['b_vendor']['duplicated']}; "
              f"A sent {s['a_sent']} accepted {s['a_accepted']} refused 429 {s['a_refused_429']} other {s['a_other']}; "
              f"vendor realtime queue max {s['lane_realtime_queued_max']}; lanes by tenant {json.dumps(s['lane_tenants'])}")
PY
echo "exit $rc; files in $OUT" >&2
exit "$rc"
