#!/usr/bin/env bash
# understudy beside nginx + nchan and the floor server (issue 15), side by side in one run:
# each scenario against each server in turn, a fresh server per run, medians of RUNS runs, and
# a markdown table with the ratios understudy / nchan and understudy / floor. Usage:
#   loadtest/peers.sh [RUNS] [OUT_DIR] [SCENARIO...]
# RUNS defaults to 3; OUT_DIR to ./artifacts/peers-<time>; SCENARIOs (default all):
#   a      1 channel x 1,000 WS subscribers, one sequential publisher at 100 ev/s, 10 s
#   a70    the same at 70 ev/s (not in the default list): a sequential publisher waits for each
#          answer, and nchan answers a publish after its fan-out, so at 100 ev/s it publishes
#          fewer events than asked; 70 ev/s is a rate every server here keeps
#   b-ws   100 channels x 10 WS subscribers, 2,000 ev/s, 10 s
#   b-sse  the same over SSE
#   c-ws   10,000 idle WS connections, RSS per connection after a 20 s hold
#   c-sse  10,000 idle SSE streams, the same
#   d      8 keep-alive publishers back to back on 100 channels for 10 s, no subscribers
# PEERS_SERVERS (default "understudy nchan floor") picks the servers; PEERS_QUICK=1 shrinks
# every scenario to a few seconds and a few hundred connections (a sanity check, not figures).
# Servers alternate within each scenario and the order rotates from run to run, so a slow
# drift of the machine hits all three alike. Ports (127.0.0.1): understudy 18480 (admin
# 19490; BENCH_PORT, BENCH_ADMIN_PORT), floor 18580 (PEERS_FLOOR_PORT), nchan 18590
# (PEERS_NCHAN_PORT). BENCH_QUIET_WAIT and BENCH_ATTEMPTS work as in bench.sh; BENCH_BIN=<dir>
# re-uses the understudy and understudy-loadtest binaries in <dir>.
set -euo pipefail

RUNS=${1:-3}
OUT=${2:-artifacts/peers-$(date +%Y%m%d-%H%M%S)}
shift $(( $# > 2 ? 2 : $# )) || true
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -eq 0 ] && SCENARIOS=(a b-ws b-sse c-ws c-sse d)
read -r -a SERVERS <<< "${PEERS_SERVERS:-understudy nchan floor}"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${BENCH_PORT:-18480}
ADMIN=${BENCH_ADMIN_PORT:-19490}
FLOOR_PORT=${PEERS_FLOOR_PORT:-18580}
NCHAN_PORT=${PEERS_NCHAN_PORT:-18590}
KEY=bench-publisher-key
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# shellcheck source=loadtest/results.sh
. "$(dirname "$0")/results.sh"
require_fresh_results "$OUT"

BIN="$OUT/bin"
mkdir -p "$BIN"
if [ -n "${BENCH_BIN:-}" ]; then
  cp "$BENCH_BIN/understudy" "$BENCH_BIN/understudy-loadtest" "$BIN/"
else
  cargo build --release --manifest-path "$ROOT/Cargo.toml" -p understudy -p understudy-loadtest >&2
  # Private copies: a rebuild during the runs must not swap the binaries under them.
  cp "$ROOT/target/release/understudy" "$ROOT/target/release/understudy-loadtest" "$BIN/"
fi

if [ "${PEERS_QUICK:-0}" = 1 ]; then
  declare -A ARGS=(
    [a]="fanout --transport ws --subscribers 100 --channels 1 --rate 50 --duration 2 --publishers 1"
    [a70]="fanout --transport ws --subscribers 100 --channels 1 --rate 35 --duration 2 --publishers 1"
    [b-ws]="fanout --transport ws --subscribers 100 --channels 10 --rate 200 --duration 2"
    [b-sse]="fanout --transport sse --subscribers 100 --channels 10 --rate 200 --duration 2"
    [c-ws]="conns --transport ws --connections 300 --hold 1"
    [c-sse]="conns --transport sse --connections 300 --hold 1"
    [d]="publish --concurrency 8 --channels 100 --duration 2 --warmup 0.5"
  )
else
  declare -A ARGS=(
    [a]="fanout --transport ws --subscribers 1000 --channels 1 --rate 100 --duration 10 --publishers 1"
    [a70]="fanout --transport ws --subscribers 1000 --channels 1 --rate 70 --duration 10 --publishers 1"
    [b-ws]="fanout --transport ws --subscribers 1000 --channels 100 --rate 2000 --duration 10"
    [b-sse]="fanout --transport sse --subscribers 1000 --channels 100 --rate 2000 --duration 10"
    [c-ws]="conns --transport ws --connections 10000 --hold 20"
    [c-sse]="conns --transport sse --connections 10000 --hold 20"
    [d]="publish --concurrency 8 --channels 100 --duration 10"
  )
fi
for s in "${SCENARIOS[@]}"; do
  [ -n "${ARGS[$s]:-}" ] || { echo "unknown scenario $s (a a70 b-ws b-sse c-ws c-sse d)" >&2; exit 2; }
done
# Install nginx + nchan before any run rather than inside the first one's start-up wait.
if [[ " ${SERVERS[*]} " == *" nchan "* ]]; then
  "$ROOT/loadtest/nchan.sh" install
fi

# Busy fraction of all CPUs over one second, from /proc/stat.
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
  while b=$(busy); [ "$b" -ge 15 ] && [ $waited -lt "${BENCH_QUIET_WAIT:-300}" ]; do
    echo "  machine ${b}% busy; waiting" >&2
    sleep 4
    waited=$((waited + 5))
  done
  echo "$b"
}

port_free() {
  ! ss -Hltn "( sport = :$1 )" | grep -q .
}

# The process started for a run, and the one whose CPU and RSS are read (nchan's worker).
SERVER_PID=
MEASURED_PID=
STOP_SIGNAL=INT
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -"$STOP_SIGNAL" "$SERVER_PID"
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
  MEASURED_PID=
  STOP_SIGNAL=INT
}
trap stop_server EXIT

# start_server SERVER LOG: starts SERVER and waits until it answers HTTP on its port.
start_server() {
  local server=$1 log=$2 port
  case "$server" in
    understudy) port=$PORT ;;
    nchan) port=$NCHAN_PORT ;;
    floor) port=$FLOOR_PORT ;;
    *) echo "unknown server $server (understudy nchan floor)" >&2; exit 2 ;;
  esac
  for _ in $(seq 100); do
    port_free "$port" && { [ "$server" != understudy ] || port_free "$ADMIN"; } && break
    sleep 0.2
  done
  if ! port_free "$port"; then
    echo "port $port is taken by another process" >&2
    exit 1
  fi
  ulimit -n "$(ulimit -Hn)"
  case "$server" in
    understudy)
      UNDERSTUDY_LISTEN=127.0.0.1:$PORT UNDERSTUDY_ADMIN_LISTEN=127.0.0.1:$ADMIN \
      UNDERSTUDY_SUBSCRIBE_AUTH=none UNDERSTUDY_PUBLISHER_KEYS=$KEY UNDERSTUDY_LOG=warn \
        "$BIN/understudy" serve > "$log" 2>&1 &
      ;;
    nchan)
      rm -rf "$OUT/nchan"
      "$ROOT/loadtest/nchan.sh" "$NCHAN_PORT" "$OUT/nchan" > "$log" 2>&1 &
      ;;
    floor)
      # A background job of a script ignores SIGINT, and the floor installs no handler.
      STOP_SIGNAL=TERM
      "$BIN/understudy-loadtest" floor --listen "127.0.0.1:$FLOOR_PORT" --lifetime 3600 \
        > "$log" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/healthz" || true)
    if [ "$code" != 000 ] && [ -n "$code" ]; then
      MEASURED_PID=$SERVER_PID
      if [ "$server" = nchan ]; then
        # nginx's master only supervises; the one worker does the work.
        MEASURED_PID=$(tr -d ' \n' < "/proc/$SERVER_PID/task/$SERVER_PID/children")
      fi
      [ -n "$MEASURED_PID" ] && return 0
    fi
    sleep 0.1
  done
  echo "$server did not come up; see $log" >&2
  exit 1
}

url_of() {
  case "$1" in
    understudy) echo "http://127.0.0.1:$PORT" ;;
    nchan) echo "http://127.0.0.1:$NCHAN_PORT" ;;
    floor) echo "http://127.0.0.1:$FLOOR_PORT" ;;
  esac
}

{
  echo "nproc: $(nproc)"
  lscpu | head -20
  echo "kernel: $(uname -srm)"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)${BENCH_BIN:+ (binaries from $BENCH_BIN)}"
  echo "nginx: $(nginx -v 2>&1 || echo missing)"
  echo "nchan: $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo missing)"
} > "$OUT/machine.txt"

RESULTS="$OUT/results.jsonl"
n=${#SERVERS[@]}
for run in $(seq "$RUNS"); do
  for scenario in "${SCENARIOS[@]}"; do
    for k in $(seq 0 $((n - 1))); do
      server=${SERVERS[$(( (k + run - 1) % n ))]}
      dialect=nchan
      [ "$server" = understudy ] && dialect=understudy
      for attempt in $(seq "${BENCH_ATTEMPTS:-6}"); do
        b=$(wait_quiet)
        start_server "$server" "$OUT/server-$scenario-$server-$run.log"
        sleep 0.5
        echo "== $scenario $server run $run attempt $attempt (machine ${b}% busy before)" >&2
        # shellcheck disable=SC2086
        line=$(UNDERSTUDY_PUBLISHER_KEY=$KEY "$BIN/understudy-loadtest" ${ARGS[$scenario]} \
          --dialect "$dialect" --url "$(url_of "$server")" --server-pid "$MEASURED_PID" --json) || true
        stop_server
        # Redo a run during which other processes used over 0.5 s of CPU.
        other=$(printf '%s' "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("other_cpu_us") or 0)' 2>/dev/null || echo 0)
        [ "$other" -le 500000 ] && break
        if [ "$attempt" -lt "${BENCH_ATTEMPTS:-6}" ]; then
          echo "  other processes used ${other} µs of CPU during the run; redoing it" >&2
        else
          echo "  other processes used ${other} µs of CPU during the run; no attempts left, keeping it" >&2
        fi
      done
      echo "{\"bench\":\"$scenario\",\"server\":\"$server\",\"run\":$run,\"attempts\":$attempt,\"busy_before_pct\":$b,\"result\":${line:-null}}" >> "$RESULTS"
      echo "$line" | cut -c1-300 >&2
    done
  done
done

python3 "$ROOT/loadtest/peers_summary.py" "$RESULTS" | tee "$OUT/summary.md"
