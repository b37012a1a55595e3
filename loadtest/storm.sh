#!/usr/bin/env bash
# Runs the reconnect-storm benchmark of docs/benchmarks.md against a fresh release server per
# run, on loopback ports 18580/19590 (BENCH_PORT, BENCH_ADMIN_PORT), and prints medians. Usage:
#   loadtest/storm.sh [RUNS] [OUT_DIR] [RATE [BURST [JITTER_MS]]] [-- STORM ARGS...]
# RUNS defaults to 3; OUT_DIR to ./artifacts/storm-<time>; RATE, BURST and JITTER_MS set
# server.max_new_subscribers_per_second, server.new_subscribers_burst and
# server.reconnect_later_jitter_ms (default: the shipped 1000, 200, 3000; RATE 0 turns the
# admission rate off). Arguments after `--` go to `understudy-loadtest storm`.
# BENCH_BIN=<dir> re-uses the binaries in <dir> (an earlier OUT_DIR/bin) instead of building.
set -euo pipefail

POS=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do POS+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
EXTRA=("$@")
RUNS=${POS[0]:-3}
OUT=${POS[1]:-artifacts/storm-$(date +%Y%m%d-%H%M%S)}
RATE=${POS[2]:-1000}
BURST=${POS[3]:-200}
JITTER=${POS[4]:-3000}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${BENCH_PORT:-18580}
ADMIN=${BENCH_ADMIN_PORT:-19590}
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
  cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" -p understudy -p understudy-loadtest >&2
  cp "$ROOT/target/release/understudy" "$ROOT/target/release/understudy-loadtest" "$BIN/"
fi

cat > "$OUT/storm.toml" <<TOML
[server]
max_new_subscribers_per_second = $RATE
new_subscribers_burst = $BURST
reconnect_later_jitter_ms = $JITTER
TOML

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

start_server() {
  ulimit -n "$(ulimit -Hn)"
  UNDERSTUDY_LISTEN=127.0.0.1:$PORT UNDERSTUDY_ADMIN_LISTEN=127.0.0.1:$ADMIN \
  UNDERSTUDY_SUBSCRIBE_AUTH=none UNDERSTUDY_PUBLISHER_KEYS=$KEY UNDERSTUDY_LOG=warn \
  UNDERSTUDY_AUDIT_DIR="$OUT/audit-$1" \
    "$BIN/understudy" serve --config "$OUT/storm.toml" > "$OUT/server-$1.log" 2>&1 &
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
  echo "kernel: $(uname -srm)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)"
  echo "admission: rate $RATE/s, burst $BURST, jitter $JITTER ms"
} > "$OUT/machine.txt"

RESULTS="$OUT/results.jsonl"
for run in $(seq "$RUNS"); do
  start_server "$run"
  sleep 0.5
  load=$(cut -d' ' -f1 /proc/loadavg)
  echo "== storm run $run (load $load)" >&2
  line=$(UNDERSTUDY_PUBLISHER_KEY=$KEY timeout 130 "$BIN/understudy-loadtest" storm \
    --url "http://127.0.0.1:$PORT" --server-pid "$SERVER_PID" --json \
    --samples-file "$OUT/publishes-$run.txt" "${EXTRA[@]}") || true
  # The server's own view: publish handling time and the admission counters.
  curl -fsS "http://127.0.0.1:$ADMIN/metrics" 2>/dev/null \
    | grep -E '^understudy_(publish_duration_seconds|new_subscribers_total)' > "$OUT/metrics-$run.txt" || true
  stop_server
  echo "{\"run\":$run,\"load_before\":$load,\"rate\":$RATE,\"burst\":$BURST,\"jitter_ms\":$JITTER,\"result\":${line:-null}}" >> "$RESULTS"
  echo "$line" | cut -c1-400 >&2
done

python3 - "$RESULTS" <<'PY' | tee "$OUT/summary.txt"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
res = [r["result"] for r in rows if r["result"]]
def med(f):
    xs = [f(r) for r in res]
    xs = [x for x in xs if x is not None]
    return (statistics.median(xs), xs) if xs else (None, [])
figs = [
    ("all back (s)", lambda r: r["storm"]["all_back_s"]),
    ("refused (all)", lambda r: r["storm"]["refused"]),
    ("refusals/client p99", lambda r: r["storm"]["refusals_per_client_p99"]),
    ("refusals/client max", lambda r: r["storm"]["refusals_per_client_max"]),
    ("publish before p50 (ms)", lambda r: r["publish_before"]["p50_us"] / 1000),
    ("publish before p99 (ms)", lambda r: r["publish_before"]["p99_us"] / 1000),
    ("publish storm p50 (ms)", lambda r: r["publish_storm"]["p50_us"] / 1000),
    ("publish storm p99 (ms)", lambda r: r["publish_storm"]["p99_us"] / 1000),
    ("publish storm max (ms)", lambda r: r["publish_storm"]["max_us"] / 1000),
    ("publishes in storm", lambda r: r["publish_storm"]["count"]),
    ("lost", lambda r: r["lost"]),
    ("duplicated", lambda r: r["duplicated"]),
    ("out of order", lambda r: r["out_of_order"]),
    ("server cpu storm (s)", lambda r: r["server_cpu_us_storm"] and r["server_cpu_us_storm"] / 1e6),
    ("loadtest cpu storm (s)", lambda r: r.get("loadtest_cpu_us_storm") and r["loadtest_cpu_us_storm"] / 1e6),
    ("other procs cpu storm (s)", lambda r: r.get("others_cpu_us_storm") is not None and (r["others_cpu_us_storm"] - (r.get("loadtest_cpu_us_storm") or 0)) / 1e6),
]
print(f"{len(res)} runs of {len(rows)}; pass: {[r['pass'] for r in res]}")
for name, f in figs:
    m, xs = med(f)
    print(f"{name:26} median {m}  runs {xs}")
PY
