#!/usr/bin/env python3
"""Runs the benchmarks of BENCHMARKS.md and writes their results as JSON.

Each run starts a fresh `msglog serve` on 127.0.0.1 with its log in a
temporary directory, runs `msglog bench --json` against it, and records the
bench report, the server's CPU time and peak RSS, and how much CPU other
processes used meanwhile (a run on a busy machine is flagged, not hidden).
Before each run it waits (up to --quiet-wait seconds) for the machine to be
idle; on a shared machine, --nice -15 (as root) keeps background jobs from
taking CPU from the server and the load generator. Python standard library only.

    cargo build --release
    python3 scripts/run_benchmarks.py --out benchmarks/results.json

The "baseline" cases run the same load against benchmarks/baseline_server.c
(the original C server's I/O design, compiled here with gcc), so that every
run carries a comparison measured on the same machine at the same time.
    python3 scripts/plot_benchmarks.py benchmarks/results.json benchmarks/scaling.svg
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from machine_load import TICKS, busy_ticks, machine_facts, priority, process_ticks, set_nice, wait_quiet

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


BASELINE_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks",
                               "baseline_server.c")


def build_baseline(directory):
    out = os.path.join(directory, "baseline_server")
    subprocess.run(["gcc", "-O2", "-o", out, BASELINE_SOURCE], check=True)
    return out


class Server:
    def __init__(self, binary, fsync, extra=(), baseline=None):
        self.dir = tempfile.mkdtemp(prefix="msglog-bench-")
        log = os.path.join(self.dir, "m.log")
        if baseline:
            args = [baseline, "0", log]
        else:
            args = [binary, "serve", "0", "--bind", "127.0.0.1", "--log", log]
        if fsync:
            args.append("--fsync")
        args.extend(extra)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     preexec_fn=priority)
        first = self.proc.stdout.readline()
        # "msglog listening on 127.0.0.1:PORT, log ..."
        self.port = int(first.split(" on ", 1)[1].split(",", 1)[0].rsplit(":", 1)[1])
        # The server logs every connection: keep reading so it never blocks.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


BASELINE = None
# The load generator; by default the server's own binary. Comparing two
# servers (before and after a change) with one load generator keeps the
# bench's own cost out of the difference.
BENCH_BIN = None


def run_once(binary, case, duration, quiet_wait):
    server = Server(binary, case.get("fsync", False), case.get("server_args", ()),
                    BASELINE if case.get("baseline") else None)
    try:
        pid = server.proc.pid
        foreign_before = wait_quiet(quiet_wait, [pid])
        bench = [BENCH_BIN or binary, "bench", "--port", str(server.port), "--json",
                 "--conns", str(case["conns"]), "--window", str(case["window"]),
                 "--size", str(case["size"])]
        if "msgs" in case:
            bench += ["--msgs", str(case["msgs"])]
        else:
            bench += ["--duration", str(case.get("duration", duration))]
        hold = case.get("hold")
        if hold:
            bench += ["--hold", str(hold)]
        rss_before = status_kib(pid, "VmRSS")
        busy0, srv0 = busy_ticks(), process_ticks(pid)
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        proc = subprocess.Popen(bench, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=priority)
        rss_idle = None
        if hold:
            # The bench says when every connection is logged in and idle.
            while True:
                line = proc.stderr.readline()
                if not line or "holding" in line:
                    break
            time.sleep(min(1.5, hold / 2))
            rss_idle = status_kib(pid, "VmRSS")
        out, err = proc.communicate(timeout=600)
        wall = time.monotonic() - t0
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        srv_s = (process_ticks(pid) - srv0) / TICKS
        busy_s = (busy_ticks() - busy0) / TICKS
        bench_s = (children1.ru_utime - children0.ru_utime) + (children1.ru_stime - children0.ru_stime)
        if proc.returncode != 0 and not out.strip():
            raise RuntimeError(f"msglog bench failed: {err.strip()}")
        report = json.loads(out)
        report["exit_code"] = proc.returncode
        report["server_cpu_s"] = srv_s
        report["bench_cpu_s"] = bench_s
        report["server_cpus"] = srv_s / wall
        report["foreign_cpus"] = max(0.0, busy_s - srv_s - bench_s) / wall
        report["foreign_cpus_before"] = foreign_before
        report["server_peak_rss_kib"] = status_kib(pid, "VmHWM")
        report["server_rss_before_kib"] = rss_before
        if rss_idle is not None:
            report["server_rss_idle_kib"] = rss_idle
            report["idle_bytes_per_conn"] = (rss_idle - rss_before) * 1024 / case["conns"]
        return report
    finally:
        server.stop()


def median_of(runs, key):
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def summarize(runs):
    keys = ["msgs_per_s", "mb_per_s", "server_cpus", "foreign_cpus", "server_peak_rss_kib",
            "idle_bytes_per_conn"]
    summary = {k: median_of(runs, k) for k in keys}
    for q in ["p50", "p90", "p99", "p99_9", "max"]:
        summary["latency_us_" + q] = statistics.median(r["latency_us"][q] for r in runs)
    summary["all_acked"] = all(r["acked"] == r["sent"] and r["rejected"] == 0 and r["failed"] == 0 for r in runs)
    summary["server_us_per_msg"] = statistics.median(
        r["server_cpu_s"] / r["acked"] * 1e6 for r in runs if r["acked"]) if runs else None
    return summary


def cases(quick):
    out = []
    target = dict(size=64)
    out.append(dict(group="target", name="50 conns, window 16", conns=50, window=16, **target))
    out.append(dict(group="target", name="50 conns, ping-pong", conns=50, window=1, **target))
    out.append(dict(group="target", name="1 conn, ping-pong", conns=1, window=1, **target))
    out.append(dict(group="target", name="10,000 conns, each sending", conns=10_000, window=1,
                    duration=10, hold=4, **target))
    for case in [c for c in out if c["group"] == "target"]:
        out.append(dict(case, group="target-baseline", name="baseline: " + case["name"], baseline=True))
    for fsync_case in [("50 conns, window 16", 50, 16), ("50 conns, ping-pong", 50, 1), ("1 conn, ping-pong", 1, 1)]:
        out.append(dict(group="fsync", name=fsync_case[0] + ", --fsync", conns=fsync_case[1],
                        window=fsync_case[2], size=64, fsync=True))
    # Busy-polling (on by default) against a server with it turned off, in
    # the same run: latency, and the CPU it costs.
    for conns in [1, 2, 50]:
        for busy_poll in ["0", "50"]:
            out.append(dict(group="busy-poll", name=f"{conns} conns, ping-pong, --busy-poll-us {busy_poll}",
                            conns=conns, window=1, size=64, server_args=["--busy-poll-us", busy_poll]))
    if not quick:
        for window in [1, 16]:
            for conns in [1, 10, 100, 1000, 10_000]:
                out.append(dict(group=f"conns-w{window}", name=f"{conns} conns, window {window}",
                                conns=conns, window=window, size=64))
        for size in [16, 64, 256, 1024, 4096, 16384, 65535]:
            out.append(dict(group="size", name=f"{size} B, 50 conns, window 16", conns=50, window=16, size=size))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/msglog", help="msglog binary (a release build)")
    ap.add_argument("--bench-bin", help="the msglog binary whose `bench` generates the load (default: --bin)")
    ap.add_argument("--out", default="benchmarks/results.json")
    ap.add_argument("--runs", type=int, default=3, help="runs per case; the report gives the median")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    ap.add_argument("--quick", action="store_true", help="only the targets (and baseline), busy-poll and --fsync cases, no scaling")
    ap.add_argument("--only", help="run only cases whose group or name contains this")
    ap.add_argument("--quiet-wait", type=float, default=120.0,
                    help="seconds to wait for an idle machine before each run")
    ap.add_argument("--nice", type=int, default=0,
                    help="scheduling priority of the server and the load generator (negative needs root)")
    args = ap.parse_args()
    global BENCH_BIN
    BENCH_BIN = args.bench_bin
    set_nice(args.nice)

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    facts = machine_facts(root, rustc=["rustc", "--version"], msglog=[args.bin, "--version"])
    results = {"machine": facts, "bench_bin": args.bench_bin or args.bin,
               "runs_per_case": args.runs, "duration_s": args.duration,
               "nice": args.nice, "cases": []}
    if os.path.exists(args.out) and args.only:
        with open(args.out) as f:
            results["cases"] = [c for c in json.load(f)["cases"]]
    selected = [c for c in cases(args.quick) if not args.only or args.only in c["group"] or args.only in c["name"]]
    global BASELINE
    if any(c.get("baseline") for c in selected):
        BASELINE = build_baseline(tempfile.mkdtemp(prefix="msglog-baseline-"))
    for case in selected:
        runs = []
        for i in range(args.runs):
            r = run_once(args.bin, case, args.duration, args.quiet_wait)
            runs.append(r)
            print(f"{case['name']:<40} run {i + 1}: {r['msgs_per_s']:>11,.0f} msgs/s {r['mb_per_s']:8.1f} MB/s "
                  f"p50 {r['latency_us']['p50']:8.1f} us  server {r['server_cpus']:.2f} CPUs  "
                  f"other {r['foreign_cpus']:.2f} CPUs  peak RSS {r['server_peak_rss_kib'] / 1024:.1f} MiB"
                  + (f"  idle {r['idle_bytes_per_conn']:.0f} B/conn" if "idle_bytes_per_conn" in r else ""),
                  file=sys.stderr, flush=True)
        entry = dict(case)
        entry["runs"] = runs
        entry["median"] = summarize(runs)
        results["cases"] = [c for c in results["cases"] if c["name"] != case["name"]] + [entry]
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
