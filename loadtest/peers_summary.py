"""The markdown table of loadtest/peers.sh: medians per scenario and server from its
results.jsonl, and the ratios understudy / nchan and understudy / floor."""
import json
import statistics
import sys

SERVERS = ["floor", "nchan", "understudy"]

SCENARIOS = {
    "a": "(a) 1 channel x 1,000 WS, one sequential publisher",
    "a70": "(a) at 70 ev/s, a rate every server keeps",
    "b-ws": "(b) 100 channels x 10 WS, 2,000 ev/s",
    "b-sse": "(b) 100 channels x 10 SSE, 2,000 ev/s",
    "c-ws": "(c) 10,000 idle WebSockets",
    "c-sse": "(c) 10,000 idle SSE streams",
    "d": "(d) 8 keep-alive publishers, 100 channels, no subscribers",
}


# Per mode: (figure, [getters]); a figure with several getters shows its medians joined by " / ".
FIGURES = {
    "fanout": [
        ("CPU-µs per delivery", [lambda r: r["server"]["cpu_us_per_delivered_event"]]),
        ("e2e p50 / p99 (ms)", [
            lambda r: r["latency"]["p50_us"] / 1000,
            lambda r: r["latency"]["p99_us"] / 1000,
        ]),
        # A sequential publisher waits for each answer: a server that answers only after its
        # fan-out publishes fewer events per second than asked, and its latencies are for
        # that lighter load.
        ("events published per s (achieved)", [lambda r: r["published"]["achieved_rate"]]),
    ],
    "conns": [
        ("RSS KiB per idle connection (after the hold)",
         [lambda r: r["server"]["rss_kib_per_connection_after_hold"]]),
    ],
    "publish": [
        ("publishes/s", [lambda r: r["accepted_per_s"]]),
        ("CPU-µs per publish", [lambda r: r["server_cpu_us_per_publish"]]),
    ],
}


def median(results, get):
    values = []
    for r in results:
        try:
            v = get(r)
        except (KeyError, TypeError):
            continue
        if v is not None:
            values.append(v)
    return statistics.median(values) if values else None


def fmt(v):
    if v is None:
        return "–"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "–"


def main(path):
    runs = {}
    for line in open(path):
        row = json.loads(line)
        runs.setdefault((row["bench"], row["server"]), []).append(row)
    print("| scenario | figure | floor | nchan | understudy | understudy / nchan | understudy / floor |")
    print("|---|---|---|---|---|---|---|")
    detail = []
    for bench, title in SCENARIOS.items():
        per_server = {s: [r["result"] for r in runs.get((bench, s), []) if r["result"]] for s in SERVERS}
        any_result = next((rs[0] for rs in per_server.values() if rs), None)
        if any_result is None:
            continue
        first = True
        for figure, getters in FIGURES[any_result["mode"]]:
            medians = {s: [median(per_server[s], get) for get in getters] for s in SERVERS}
            cells = [" / ".join(fmt(v) for v in medians[s]) for s in SERVERS]
            u = medians["understudy"]
            vs_nchan = " / ".join(ratio(a, b) for a, b in zip(u, medians["nchan"]))
            vs_floor = " / ".join(ratio(a, b) for a, b in zip(u, medians["floor"]))
            print(f"| {title if first else ''} | {figure} | {' | '.join(cells)} | {vs_nchan} | {vs_floor} |")
            first = False
        passed = []
        for s in SERVERS:
            rows = runs.get((bench, s), [])
            ok = sum(1 for r in rows if r["result"] and r["result"].get("pass"))
            passed.append(f"{ok}/{len(rows)}" if rows else "–")
        what = "runs passed (0 lost, 0 duplicated)" if any_result["mode"] == "fanout" else "runs passed"
        print(f"| | {what} | {' | '.join(passed)} | | |")
        for s in SERVERS:
            for r in per_server[s]:
                if r["mode"] == "fanout":
                    detail.append(
                        f"{bench} {s}: lost {r['lost']} dup {r['duplicated']} out-of-order "
                        f"{r['out_of_order']} of {r['expected']}; "
                        f"cpu {fmt((r.get('server') or {}).get('cpu_us_per_delivered_event'))} µs/ev; "
                        f"p99 {r['latency']['p99_us'] / 1000:.1f} ms; other cpu {(r.get('other_cpu_us') or 0) / 1000:.0f} ms"
                    )
                elif r["mode"] == "conns":
                    sv = r.get("server") or {}
                    detail.append(
                        f"{bench} {s}: {r['connected']} connected; "
                        f"{fmt(sv.get('rss_kib_per_connection'))} KiB/conn, "
                        f"{fmt(sv.get('rss_kib_per_connection_after_hold'))} after the hold"
                    )
                else:
                    detail.append(
                        f"{bench} {s}: {fmt(r['accepted_per_s'])} publishes/s, "
                        f"{fmt(r.get('server_cpu_us_per_publish'))} µs/publish, statuses {r['statuses']}; "
                        f"other cpu {(r.get('other_cpu_us') or 0) / 1000:.0f} ms"
                    )
    print()
    print("Every run:")
    print()
    for line in detail:
        print(f"- {line}")


if __name__ == "__main__":
    main(sys.argv[1])
