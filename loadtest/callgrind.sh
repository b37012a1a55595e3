#!/usr/bin/env bash
# Server instructions per delivered event, or per publish, counted by callgrind: the user-space
# cost, free of the wall-clock noise of a shared machine (kernel work is not counted). Usage:
#   loadtest/callgrind.sh MODE [OUT_DIR]        MODE: ws, sse or publish
# ws, sse: runs the release server under `valgrind --tool=callgrind` twice with SUBS subscribers
# (200) on CHANNELS channels (1) at RATE events/s (20), publishing for SHORT (10) and then LONG
# (50) seconds, and prints (Ir long - Ir short) / (delivered long - delivered short), so that
# start-up, connecting and shutting down cancel out. Scenario (b), many small rooms:
#   SUBS=200 CHANNELS=20 RATE=100 SHORT=10 LONG=30 loadtest/callgrind.sh ws
# publish: CONCURRENCY (8) keep-alive publishers on CHANNELS channels (100 here), no subscribers,
# for SHORT (3) and LONG (10) seconds; prints (Ir long - Ir short) / (accepted long - accepted
# short), the instructions per publish of scenario (d). Each run is a fresh server on 127.0.0.1:CG_PORT (18880), admin
# CG_ADMIN_PORT (19880). See where the instructions go with
#   callgrind_annotate OUT_DIR/long.*.out
# BENCH_BIN=<dir> uses the understudy and understudy-loadtest binaries in <dir> instead of building.
set -euo pipefail

TRANSPORT=${1:?usage: loadtest/callgrind.sh ws|sse|publish [OUT_DIR]}
OUT=${2:-artifacts/callgrind-$TRANSPORT-$(date +%Y%m%d-%H%M%S)}
SUBS=${SUBS:-200}
RATE=${RATE:-20}
CONCURRENCY=${CONCURRENCY:-8}
if [ "$TRANSPORT" = publish ]; then
  CHANNELS=${CHANNELS:-100}
  SHORT=${SHORT:-3}
  LONG=${LONG:-10}
else
  CHANNELS=${CHANNELS:-1}
  SHORT=${SHORT:-10}
  LONG=${LONG:-50}
fi
PORT=${CG_PORT:-18880}
ADMIN=${CG_ADMIN_PORT:-19880}
KEY=callgrind-publisher-key

ROOT=$(cd "$(dirname "$0")/.." && pwd)
command -v valgrind > /dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BIN=${BENCH_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release --manifest-path "$ROOT/Cargo.toml" -p understudy -p understudy-loadtest >&2
  BIN="$OUT/bin"
  mkdir -p "$BIN"
  cp "$ROOT/target/release/understudy" "$ROOT/target/release/understudy-loadtest" "$BIN/"
fi

for p in "$PORT" "$ADMIN"; do
  if ss -Hltn "( sport = :$p )" | grep -q .; then
    echo "port $p is taken; set CG_PORT/CG_ADMIN_PORT" >&2
    exit 1
  fi
done

SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -INT "$SERVER_PID"
    sleep 2
    kill -INT "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}
trap stop_server EXIT

# run NAME SECONDS: one server under callgrind, one fan-out against it.
run() {
  local name=$1 seconds=$2
  rm -f "$OUT/$name".*
  ulimit -n "$(ulimit -Hn)"
  UNDERSTUDY_LISTEN=127.0.0.1:$PORT UNDERSTUDY_ADMIN_LISTEN=127.0.0.1:$ADMIN \
  UNDERSTUDY_SUBSCRIBE_AUTH=none UNDERSTUDY_PUBLISHER_KEYS=$KEY UNDERSTUDY_LOG=warn \
    valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.%p.out" "$BIN/understudy" serve \
    > "$OUT/$name.server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 300); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" > /dev/null 2>&1 && break
    sleep 0.2
  done
  if [ "$TRANSPORT" = publish ]; then
    UNDERSTUDY_PUBLISHER_KEY=$KEY "$BIN/understudy-loadtest" publish --concurrency "$CONCURRENCY" \
      --channels "$CHANNELS" --warmup 0 --duration "$seconds" \
      --url "http://127.0.0.1:$PORT" --server-pid "$SERVER_PID" --json > "$OUT/$name.json"
  else
    UNDERSTUDY_PUBLISHER_KEY=$KEY "$BIN/understudy-loadtest" fanout --transport "$TRANSPORT" \
      --subscribers "$SUBS" --channels "$CHANNELS" --rate "$RATE" --duration "$seconds" \
      --connect-concurrency 50 --connect-timeout 120 --drain-timeout 60 \
      --url "http://127.0.0.1:$PORT" --server-pid "$SERVER_PID" --json > "$OUT/$name.json"
  fi
  stop_server
}

run short "$SHORT"
run long "$LONG"

python3 - "$OUT" "$TRANSPORT" <<'PY'
import glob, json, sys
out, transport = sys.argv[1], sys.argv[2]
def figures(name):
    d = json.load(open(f"{out}/{name}.json"))
    ir = sum(int(l.split()[1]) for f in glob.glob(f"{out}/{name}.*.out")
             for l in open(f) if l.startswith("totals:"))
    if transport == "publish":
        return d["accepted"], d["requests"] - d["accepted"], ir
    return d["delivered"], d["lost"] + d["duplicated"] + d["out_of_order"], ir
s, l = figures("short"), figures("long")
per = (l[2] - s[2]) / (l[0] - s[0])
count, anomalies = ("publishes", "refused") if transport == "publish" else ("delivered", "anomalies")
print(json.dumps({"transport": transport, "short": {count: s[0], anomalies: s[1], "ir": s[2]},
                  "long": {count: l[0], anomalies: l[1], "ir": l[2]},
                  f"ir_per_{'publish' if transport == 'publish' else 'delivered_event'}": round(per)}))
PY
