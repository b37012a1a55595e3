#!/usr/bin/env bash
# Runs benchmark (a) over WebSocket across two nodes sharing one Redis engine: subscribers on
# node B, the publisher on node A, so every event is sequenced in Redis, crosses Redis pub/sub
# and is delivered by B. Each run gets a fresh redis-server (no persistence) and two fresh
# release servers, all on loopback:
#   redis 16400 (TWO_NODE_REDIS_PORT)
#   node A 18680, admin 19690 (TWO_NODE_A_PORT, TWO_NODE_A_ADMIN_PORT)
#   node B 18780, admin 19790 (TWO_NODE_B_PORT, TWO_NODE_B_ADMIN_PORT)
# Usage:
#   loadtest/two-node.sh [RUNS] [OUT_DIR]
# RUNS defaults to 3; OUT_DIR to ./artifacts/two-node-<time>. Each run's JSON line goes to
# OUT_DIR/results.jsonl and the medians to OUT_DIR/summary.txt. The report gives node B's CPU
# as `server`, node A's and redis-server's under `peers`, and their sum per delivered event.
# Like bench.sh, each run waits until the machine is quiet and is redone (up to 6 times) when
# other processes used over 0.5 s of CPU during it. TWO_NODE_BIN=<dir> re-uses the understudy
# and understudy-loadtest binaries in <dir> instead of building; REDIS_SERVER picks the
# redis-server binary (default: the one on PATH).
set -euo pipefail

RUNS=${1:-3}
OUT=${2:-artifacts/two-node-$(date +%Y%m%d-%H%M%S)}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REDIS_PORT=${TWO_NODE_REDIS_PORT:-16400}
A_PORT=${TWO_NODE_A_PORT:-18680}
A_ADMIN=${TWO_NODE_A_ADMIN_PORT:-19690}
B_PORT=${TWO_NODE_B_PORT:-18780}
B_ADMIN=${TWO_NODE_B_ADMIN_PORT:-19790}
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || true)}
KEY=bench-publisher-key
ARGS="fanout --transport ws --subscribers 1000 --channels 1 --rate 100 --duration 10"

[ -n "$REDIS_SERVER" ] && [ -x "$REDIS_SERVER" ] || {
  echo "no redis-server found; set REDIS_SERVER" >&2
  exit 2
}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# shellcheck source=loadtest/results.sh
. "$(dirname "$0")/results.sh"
require_fresh_results "$OUT"

BIN="$OUT/bin"
mkdir -p "$BIN"
if [ -n "${TWO_NODE_BIN:-}" ]; then
  cp "$TWO_NODE_BIN/understudy" "$TWO_NODE_BIN/understudy-loadtest" "$BIN/"
else
  cargo build --release --manifest-path "$ROOT/Cargo.toml" -p understudy -p understudy-loadtest >&2
  # Private copies: a rebuild during the runs must not swap the binaries under them.
  cp "$ROOT/target/release/understudy" "$ROOT/target/release/understudy-loadtest" "$BIN/"
fi

# Busy percentage of all CPUs over one second, from /proc/stat.
busy() {
  read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ < /proc/stat
  sleep 1
  read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ < /proc/stat
  local total=$(( (b1+b2+b3+b4+b5+b6+b7+b8) - (a1+a2+a3+a4+a5+a6+a7+a8) ))
  local idle=$(( (b4+b5) - (a4+a5) ))
  echo $(( 100 * (total - idle) / (total > 0 ? total : 1) ))
}

wait_quiet() {
  local waited=0 b
  while b=$(busy); [ "$b" -ge 15 ] && [ $waited -lt 300 ]; do
    echo "  machine ${b}% busy; waiting" >&2
    sleep 4
    waited=$((waited + 5))
  done
  echo "$b"
}

port_free() {
  ! ss -Hltn "( sport = :$1 )" | grep -q .
}

REDIS_PID=
A_PID=
B_PID=

# Stops one process of ours: SIGINT (the servers drain) or SIGTERM, then SIGKILL after 5 s.
stop_pid() {
  local pid=$1 sig=$2
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_all() {
  stop_pid "$B_PID" INT
  stop_pid "$A_PID" INT
  stop_pid "$REDIS_PID" TERM
  B_PID= A_PID= REDIS_PID=
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start_redis() {
  "$REDIS_SERVER" --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --daemonize no --logfile "$OUT/redis-$1.log" > /dev/null 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 100); do
    kill -0 "$REDIS_PID" 2>/dev/null || break
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  echo "redis-server did not come up; see $OUT/redis-$1.log" >&2
  exit 1
}

# start_node NAME PORT ADMIN_PORT LOG_TAG; sets NODE_PID.
start_node() {
  local name=$1 port=$2 admin=$3 tag=$4
  mkdir -p "$OUT/audit-$name"
  UNDERSTUDY_LISTEN=127.0.0.1:$port UNDERSTUDY_ADMIN_LISTEN=127.0.0.1:$admin \
  UNDERSTUDY_ENGINE_URL=redis://127.0.0.1:$REDIS_PORT/0 \
  UNDERSTUDY_AUDIT_DIR="$OUT/audit-$name" \
  UNDERSTUDY_SUBSCRIBE_AUTH=none UNDERSTUDY_PUBLISHER_KEYS=$KEY UNDERSTUDY_LOG=warn \
    "$BIN/understudy" serve > "$OUT/node-$name-$tag.log" 2>&1 &
  NODE_PID=$!
}

# Waits until a node answers /healthz and its engine reports up on /metrics.
wait_node() {
  local pid=$1 port=$2 admin=$3 log=$4
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || break
    if curl -fsS "http://127.0.0.1:$port/healthz" > /dev/null 2>&1 &&
      curl -fsS "http://127.0.0.1:$admin/metrics" 2>/dev/null | grep -q '^understudy_engine_up 1'; then
      return 0
    fi
    sleep 0.1
  done
  echo "node on $port did not come up with its engine; see $log" >&2
  exit 1
}

start_all() {
  local tag=$1
  local ports=("$REDIS_PORT" "$A_PORT" "$A_ADMIN" "$B_PORT" "$B_ADMIN") p taken
  for _ in $(seq 100); do
    taken=
    for p in "${ports[@]}"; do port_free "$p" || taken=$p; done
    [ -z "$taken" ] && break
    sleep 0.2
  done
  if [ -n "$taken" ]; then
    echo "port $taken is taken by another process; set TWO_NODE_*PORT" >&2
    exit 1
  fi
  ulimit -n "$(ulimit -Hn)"
  start_redis "$tag"
  start_node a "$A_PORT" "$A_ADMIN" "$tag"; A_PID=$NODE_PID
  start_node b "$B_PORT" "$B_ADMIN" "$tag"; B_PID=$NODE_PID
  wait_node "$A_PID" "$A_PORT" "$A_ADMIN" "$OUT/node-a-$tag.log"
  wait_node "$B_PID" "$B_PORT" "$B_ADMIN" "$OUT/node-b-$tag.log"
}

{
  echo "nproc: $(nproc)"
  lscpu | head -20
  echo "kernel: $(uname -srm)"
  echo "redis: $("$REDIS_SERVER" --version)"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)${TWO_NODE_BIN:+ (binaries from $TWO_NODE_BIN)}"
} > "$OUT/machine.txt"

RESULTS="$OUT/results.jsonl"
for run in $(seq "$RUNS"); do
  for attempt in 1 2 3 4 5 6; do
    b=$(wait_quiet)
    start_all "$run"
    sleep 0.5
    echo "== two-node a-ws run $run attempt $attempt (machine ${b}% busy before)" >&2
    # shellcheck disable=SC2086
    line=$(UNDERSTUDY_PUBLISHER_KEY=$KEY "$BIN/understudy-loadtest" $ARGS \
      --url "http://127.0.0.1:$B_PORT" --publish-url "http://127.0.0.1:$A_PORT" \
      --server-pid "$B_PID" --peer-pid "node-a=$A_PID" --peer-pid "redis=$REDIS_PID" \
      --json) || true
    stop_all
    # Redo a run during which other processes used over 0.5 s of CPU.
    other=$(printf '%s' "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("other_cpu_us") or 0)' 2>/dev/null || echo 0)
    [ "$other" -le 500000 ] && break
    echo "  other processes used ${other} µs of CPU during the run; redoing it" >&2
  done
  echo "{\"bench\":\"two-node-a-ws\",\"run\":$run,\"attempts\":$attempt,\"busy_before_pct\":$b,\"result\":${line:-null}}" >> "$RESULTS"
  echo "$line" | cut -c1-300 >&2
done

python3 "$ROOT/loadtest/bench_summary.py" "$RESULTS" | tee "$OUT/summary.txt"
