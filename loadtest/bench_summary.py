"""Medians of the benchmark runs in a results.jsonl written by loadtest/bench.sh."""
import json
import statistics
import sys

FIELDS = {
    "fanout": [
        ("pass", lambda r: r["pass"]),
        ("expected", lambda r: r["expected"]),
        ("lost", lambda r: r["lost"]),
        ("duplicated", lambda r: r["duplicated"]),
        ("out_of_order", lambda r: r["out_of_order"]),
        ("cpu_us_per_event", lambda r: r["server"]["cpu_us_per_delivered_event"]),
        ("e2e_p50_ms", lambda r: r["latency"]["p50_us"] / 1000),
        ("e2e_p99_ms", lambda r: r["latency"]["p99_us"] / 1000),
        ("e2e_p999_ms", lambda r: r["latency"]["p999_us"] / 1000),
        ("e2e_max_ms", lambda r: r["latency"]["max_us"] / 1000),
        ("rss_before_kib", lambda r: r["server"]["rss_before_kib"]),
        ("rss_after_kib", lambda r: r["server"]["rss_after_kib"]),
        ("loadtest_cpu_us_per_event", lambda r: r["loadtest_cpu_us"] / max(r["delivered"], 1)),
        ("other_cpu_ms", lambda r: r["other_cpu_us"] / 1000),
    ],
    "conns": [
        ("pass", lambda r: r["pass"]),
        ("connected", lambda r: r["connected"]),
        ("rss_kib_per_conn", lambda r: r["server"]["rss_kib_per_connection"]),
        ("rss_kib_per_conn_after_hold", lambda r: r["server"]["rss_kib_per_connection_after_hold"]),
        ("connect_p50_ms", lambda r: r["connect"]["p50_us"] / 1000),
        ("connect_p99_ms", lambda r: r["connect"]["p99_us"] / 1000),
        ("connect_max_ms", lambda r: r["connect"]["max_us"] / 1000),
        ("cpu_us_during_hold", lambda r: r["server"]["cpu_us_during_hold"]),
    ],
    "publish": [
        ("pass", lambda r: r["pass"]),
        ("publishes_per_s", lambda r: r["accepted_per_s"]),
        ("p50_ms", lambda r: r["latency"]["p50_us"] / 1000),
        ("p99_ms", lambda r: r["latency"]["p99_us"] / 1000),
        ("p999_ms", lambda r: r["latency"]["p999_us"] / 1000),
        ("cpu_us_per_publish", lambda r: r["server_cpu_us_per_publish"]),
        ("loadtest_cpu_us_per_request", lambda r: r["loadtest_cpu_us"] / max(r["requests"], 1)),
        ("other_cpu_ms", lambda r: r["other_cpu_us"] / 1000),
    ],
}


def main(path):
    runs = {}
    for line in open(path):
        row = json.loads(line)
        runs.setdefault(row["bench"], []).append(row)
    for bench, rows in runs.items():
        results = [r["result"] for r in rows if r["result"]]
        print(f"{bench}: {len(results)} of {len(rows)} runs reported")
        if not results:
            continue
        for name, get in FIELDS[results[0]["mode"]]:
            values = []
            for r in results:
                try:
                    values.append(get(r))
                except (KeyError, TypeError):
                    pass
            if not values:
                continue
            if isinstance(values[0], bool):
                print(f"  {name:28} {sum(values)}/{len(values)} passed")
                continue
            shown = ", ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in values)
            print(f"  {name:28} median {statistics.median(values):10.2f}   runs [{shown}]")
        # Other processes of a multi-node fanout (`--peer-pid`), then everything together.
        for peer in [p["name"] for p in results[0].get("peers") or []]:
            show(f"{peer}_cpu_us_per_event", [
                p["cpu_us_per_delivered_event"]
                for r in results for p in r.get("peers") or [] if p["name"] == peer
            ])
        if results[0].get("peers"):
            show("total_cpu_us_per_event",
                 [r.get("total_cpu_us_per_delivered_event") for r in results])


def show(name, values):
    values = [v for v in values if v is not None]
    if values:
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name:28} median {statistics.median(values):10.2f}   runs [{shown}]")


if __name__ == "__main__":
    main(sys.argv[1])
