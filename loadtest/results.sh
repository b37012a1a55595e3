# Sourced by the load scripts that append one JSON line per run to OUT_DIR/results.jsonl and
# summarise every line of it.

# Refuses an OUT_DIR that already holds results: an earlier run's lines would be summarised as
# this run's.
require_fresh_results() {
  if [ -s "$1/results.jsonl" ]; then
    echo "$1 already holds results.jsonl from an earlier run; give another OUT_DIR" >&2
    exit 2
  fi
}
