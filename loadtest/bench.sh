#!/usr/bin/env bash
# Runs the benchmark set behind docs/benchmarks.md against a fresh release server per run,
# on loopback ports 18480/19490 (BENCH_PORT, BENCH_ADMIN_PORT), and prints medians. Usage:
#   loadtest/bench.sh [RUNS] [OUT_DIR] [NAME...]
# RUNS defaults to 3; OUT_DIR to ./artifacts/bench-<time>; NAMEs pick benchmarks
# (a-ws a-sse b c d; default all; e-v1 and e-pusher compare /v1/publish with the Pusher HTTP
# API at the same load). Each run waits until the machine is quiet (other processes below 15%
# CPU) so a concurrent build does not skew the figures.
# BENCH_QUIET_WAIT (default 300) bounds the seconds a run waits for a quiet machine, and
# BENCH_ATTEMPTS (default 6) how often a disturbed run is redone; on a machine shared with
# other work, lower both and read other_cpu_ms in the summary.
# BENCH_INTERLEAVE=1 runs the NAMEs in turn within each round (e-v1, e-pusher, e-v1, ...)
# instead of all runs of one NAME first, so a slow drift of the machine hits both alike.
# BENCH_BIN=<dir> re-uses the understudy and understudy-loadtest binaries in <dir> (e.g. an
# earlier OUT_DIR/bin) instead of building.
# loadtest/peers.sh runs the same kind of scenarios against understudy, nginx + nchan and the
# floor server side by side, with the ratios between them (issue 15).
set -euo pipefail

RUNS=${1:-3}
OUT=${2:-artifacts/bench-$(date +%Y%m%d-%H%M%S)}
shift $(( $# > 2 ? 2 : $# )) || true
NAMES=("$@")
[ ${#NAMES[@]} -eq 0 ] && NAMES=(a-ws a-sse b c d)

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${BENCH_PORT:-18480}
ADMIN=${BENCH_ADMIN_PORT:-19490}
KEY=bench-publisher-key
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# shellcheck source=loadtest/results.sh
. "$(dirname "$0")/results.sh"
require_fresh_results "$OUT"

BIN="$OUT/bin"
mkdir -p "$BIN"
if [ -n "${BENCH_BIN:-}" ]; then
  # Re-measure binaries kept from an earlier run (its OUT_DIR/bin).
  cp "$BENCH_BIN/understudy" "$BENCH_BIN/understudy-loadtest" "$BIN/"
else
  cargo build --release --manifest-path "$ROOT/Cargo.toml" -p understudy -p understudy-loadtest >&2
  # Private copies: a rebuild during the runs must not swap the binaries under them.
  cp "$ROOT/target/release/understudy" "$ROOT/target/release/understudy-loadtest" "$BIN/"
fi

declare -A ARGS=(
  [a-ws]="fanout --transport ws --subscribers 1000 --channels 1 --rate 100 --duration 10"
  [a-sse]="fanout --transport sse --subscribers 1000 --channels 1 --rate 100 --duration 10"
  [b]="fanout --transport ws --subscribers 1000 --channels 100 --rate 2000 --duration 10"
  [c]="conns --connections 10000 --hold 20"
  [d]="publish --concurrency 16 --duration 10 --channels 10"
  [e-v1]="publish --concurrency 16 --duration 8 --channels 10"
  [e-pusher]="publish --via pusher --concurrency 16 --duration 8 --channels 10"
)

# The Pusher app `publish --via pusher` publishes as (the loadtest's defaults).
CONFIG="$OUT/understudy.toml"
cat > "$CONFIG" <<'TOML'
[[apps]]
id = "loadtest"
key = "loadtest-key"
secret = "loadtest-secret-0123456789"
forward = "none"
TOML

# Busy fraction of all CPUs over one second, from /proc/stat.
busy() {
  local a b
  read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ < /proc/stat
  sleep 1
  read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ < /proc/stat
  local total=$(( (b1+b2+b3+b4+b5+b6+b7+b8) - (a1+a2+a3+a4+a5+a6+a7+a8) ))
  local idle=$(( (b4+b5) - (a4+a5) ))
  echo $(( 100 * (total - idle) / (total > 0 ? total : 1) ))
}

wait_quiet() {
  local waited=0 b
  while b=$(busy); [ "$b" -ge 15 ] && [ $waited -lt "${BENCH_QUIET_WAIT:-300}" ]; do
    echo "  machine ${b}% busy; waiting" >&2
    sleep 4
    waited=$((waited + 5))
  done
  echo "$b"
}

SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -INT "$SERVER_PID"
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}
trap stop_server EXIT

port_free() {
  ! ss -Hltn "( sport = :$1 )" | grep -q .
}

start_server() {
  for _ in $(seq 100); do
    port_free "$PORT" && port_free "$ADMIN" && break
    sleep 0.2
  done
  if ! port_free "$PORT" || ! port_free "$ADMIN"; then
    echo "port $PORT or $ADMIN is taken by another process; set BENCH_PORT/BENCH_ADMIN_PORT" >&2
    exit 1
  fi
  ulimit -n "$(ulimit -Hn)"
  UNDERSTUDY_LISTEN=127.0.0.1:$PORT UNDERSTUDY_ADMIN_LISTEN=127.0.0.1:$ADMIN \
  UNDERSTUDY_SUBSCRIBE_AUTH=none UNDERSTUDY_PUBLISHER_KEYS=$KEY UNDERSTUDY_LOG=warn \
    "$BIN/understudy" serve --config "$CONFIG" > "$OUT/server-$1.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    curl -fsS "http://127.0.0.1:$PORT/healthz" > /dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server did not come up; see $OUT/server-$1.log" >&2
  exit 1
}

{
  echo "nproc: $(nproc)"
  lscpu | head -20
  echo "kernel: $(uname -srm)"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)${BENCH_BIN:+ (binaries from $BENCH_BIN)}"
} > "$OUT/machine.txt"

RESULTS="$OUT/results.jsonl"
PLAN=()
if [ "${BENCH_INTERLEAVE:-0}" = 1 ]; then
  for run in $(seq "$RUNS"); do for name in "${NAMES[@]}"; do PLAN+=("$name $run"); done; done
else
  for name in "${NAMES[@]}"; do for run in $(seq "$RUNS"); do PLAN+=("$name $run"); done; done
fi
for step in "${PLAN[@]}"; do
  read -r name run <<< "$step"
  for attempt in $(seq "${BENCH_ATTEMPTS:-6}"); do
    b=$(wait_quiet)
    start_server "$name-$run"
    sleep 0.5
    echo "== $name run $run attempt $attempt (machine ${b}% busy before)" >&2
    # shellcheck disable=SC2086
    line=$(UNDERSTUDY_PUBLISHER_KEY=$KEY "$BIN/understudy-loadtest" ${ARGS[$name]} \
      --url "http://127.0.0.1:$PORT" --server-pid "$SERVER_PID" --json) || true
    stop_server
    # Redo a run during which other processes used over 0.5 s of CPU.
    other=$(printf '%s' "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("other_cpu_us") or 0)' 2>/dev/null || echo 0)
    [ "$other" -le 500000 ] && break
    echo "  other processes used ${other} µs of CPU during the run; redoing it" >&2
  done
  echo "{\"bench\":\"$name\",\"run\":$run,\"attempts\":$attempt,\"busy_before_pct\":$b,\"result\":${line:-null}}" >> "$RESULTS"
  echo "$line" | cut -c1-300 >&2
done

python3 "$ROOT/loadtest/bench_summary.py" "$RESULTS" | tee "$OUT/summary.txt"
