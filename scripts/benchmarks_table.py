#!/usr/bin/env python3
"""Prints the Markdown tables of BENCHMARKS.md from scripts/run_benchmarks.py's JSON.

    python3 scripts/benchmarks_table.py benchmarks/results.json

Every figure is the median of the runs of its case. Python standard library only.
"""

import json
import sys


def fmt_int(v):
    return "-" if v is None else f"{v:,.0f}"


def fmt_us(v):
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 1000 else f"{v:.1f}"


def row(c):
    m = c["median"]
    return [
        c["name"],
        fmt_int(m["msgs_per_s"]),
        f"{m['mb_per_s']:.1f}",
        fmt_us(m["latency_us_p50"]),
        fmt_us(m["latency_us_p90"]),
        fmt_us(m["latency_us_p99"]),
        fmt_us(m["latency_us_p99_9"]),
        fmt_us(m["latency_us_max"]),
        f"{m['server_cpus']:.2f}",
        f"{m['server_us_per_msg']:.2f}",
        f"{m['server_peak_rss_kib'] / 1024:.1f}",
        f"{m['foreign_cpus']:.2f}",
        "yes" if m["all_acked"] else "NO",
    ]


HEADER = ["case", "msgs/s", "MB/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs",
          "server CPUs", "server CPU µs/msg", "server peak RSS MiB", "other CPUs", "all acked"]


def table(cases):
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for c in cases:
        lines.append("| " + " | ".join(row(c)) + " |")
    return "\n".join(lines)


def main():
    with open(sys.argv[1]) as f:
        results = json.load(f)
    groups = {}
    for c in results["cases"]:
        groups.setdefault(c["group"], []).append(c)
    titles = {
        "target": "Targets (64-byte messages)",
        "fsync": "With --fsync",
        "conns-w16": "Scaling with connections, window 16",
        "conns-w1": "Scaling with connections, ping-pong",
        "size": "Scaling with message size (50 connections, window 16)",
        "target-baseline": "Targets against the baseline server (benchmarks/baseline_server.c), same run",
        "busy-poll": "Busy-polling on (default) and off, same run",
    }
    for group in ["target", "target-baseline", "busy-poll", "fsync", "conns-w16", "conns-w1", "size"]:
        if group in groups:
            print(f"### {titles[group]}\n")
            print(table(groups[group]))
            print()
    for c in results["cases"]:
        if c["median"].get("idle_bytes_per_conn"):
            runs = c["runs"]
            print(f"Idle ({c['name']}): {c['conns']:,} authenticated idle connections took "
                  f"{c['median']['idle_bytes_per_conn']:,.0f} bytes of server RSS each (median; runs: "
                  + ", ".join(f"{r['idle_bytes_per_conn']:,.0f}" for r in runs)
                  + f"); RSS before {runs[0]['server_rss_before_kib'] / 1024:.1f} MiB, "
                  f"idle {runs[0]['server_rss_idle_kib'] / 1024:.1f} MiB.")


if __name__ == "__main__":
    main()
