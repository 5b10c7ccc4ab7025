#!/usr/bin/env python3
"""The NATS JetStream sink against its ceiling, in one run (BENCHMARKS.md,
"NATS JetStream sink (issue 14)").

For each run it starts, in fresh temporary directories on 127.0.0.1, a
single nats-server (an R1 stream) and a three-node JetStream cluster (an R3
stream), and measures acknowledged messages/s of 64-byte messages:

  * msglog: `msglog serve --sink nats://...` loaded by `msglog bench` with
    50 connections x 16 in flight, and with 1 connection ping-pong;
  * the ceiling: `examples/nats_publisher.rs`, a plain async-nats JetStream
    publisher on one NATS connection (as msglog's sink), with the same
    number of publishes in flight (50 tasks x 16 = 800, and 1);
  * for scale, the file sink (`msglog serve --log FILE`) with the same
    bench cases.

Each case runs --runs times (default 3); the report is the median. On a
shared machine, --nice -15 (as root) keeps background jobs from taking the
CPU the servers and load generators need. Every
cluster is fresh for each measurement, so no run inherits a large stream.
It records the CPU time of nats-server, msglog and the load generator, and
how much CPU other processes used meanwhile (the machine is shared). It
stops only the processes it started, each within a bounded time.

    cargo build --release --all-features --examples
    python3 scripts/run_nats_benchmarks.py --out benchmarks/nats-results.json

Python standard library only.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from machine_load import TICKS, cpu_ticks, machine_facts, priority, process_ticks, set_nice, wait_quiet

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
STREAM = "bench"


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def stop(proc, grace=10):
    """Ends a process this script started: SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)


class Cluster:
    """`size` nats-server processes with JetStream on 127.0.0.1."""

    def __init__(self, binary, size):
        self.dir = tempfile.mkdtemp(prefix="msglog-nats-bench-")
        self.procs = []
        ports = free_ports(3 * size)
        self.client_ports = ports[0::3]
        self.monitor_ports = ports[2::3]
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in ports[1::3])
        try:
            for i in range(size):
                args = [binary, "--jetstream", "--addr", "127.0.0.1", "--server_name", f"n{i}",
                        "--port", str(ports[3 * i]), "--http_port", str(ports[3 * i + 2]),
                        "--store_dir", os.path.join(self.dir, f"n{i}")]
                if size > 1:
                    args += ["--cluster_name", "bench", "--cluster", f"nats://127.0.0.1:{ports[3 * i + 1]}",
                             "--routes", routes]
                out = open(os.path.join(self.dir, f"n{i}.out"), "wb")
                self.procs.append(subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                                   stderr=subprocess.STDOUT, preexec_fn=priority))
                out.close()
            self.wait_ready(30)
        except BaseException:
            self.stop()
            raise

    def url(self):
        return "nats://" + ",".join(f"127.0.0.1:{p}" for p in self.client_ports)

    def pids(self):
        return [p.pid for p in self.procs]

    def jsz(self, port):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/jsz", timeout=2) as r:
                return json.load(r)
        except (OSError, ValueError):
            return None

    def wait_ready(self, limit_s):
        """Until a node names a JetStream meta leader (a single server: answers)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"nats-server exited with {p.returncode}; see {self.dir}")
            for port in self.monitor_ports:
                j = self.jsz(port)
                if j is None:
                    continue
                if len(self.procs) == 1 or (j.get("meta_cluster") or {}).get("leader"):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"no JetStream meta leader within {limit_s} s")

    def stop(self):
        for p in self.procs:
            stop(p)
        shutil.rmtree(self.dir, ignore_errors=True)


class Serve:
    """`msglog serve` on a free port of 127.0.0.1, with `sink_args`."""

    def __init__(self, binary, sink_args, limit_s=60):
        self.dir = tempfile.mkdtemp(prefix="msglog-bench-")
        args = [binary, "serve", "0", "--bind", "127.0.0.1"]
        args += [a.replace("{dir}", self.dir) for a in sink_args]
        env = dict(os.environ, RUST_LOG="warn")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=self.dir, env=env, preexec_fn=priority)
        first = []
        reader = threading.Thread(target=lambda: first.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(limit_s)
        line = first[0] if first else ""
        if not line.startswith("msglog listening on "):
            stop(self.proc)
            err = self.proc.stderr.read()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError(f"msglog serve did not start: {line.strip()} {err.strip()}")
        # "msglog listening on 127.0.0.1:PORT, ..."
        self.port = int(line.split(" on ", 1)[1].split(",", 1)[0].rsplit(":", 1)[1])
        # Keep both pipes drained so that the server never blocks on them.
        for pipe in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=pipe.read, daemon=True).start()

    def stop(self):
        stop(self.proc, grace=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def measure(command, watched_pids, timeout_s):
    """Runs the load generator; returns its JSON report with CPU figures."""
    cpu0 = cpu_ticks()
    watched0 = {p: process_ticks(p) for p in watched_pids}
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=priority)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"{command[0]} did not finish within {timeout_s} s")
    wall = time.monotonic() - t0
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not out.strip():
        raise RuntimeError(f"{os.path.basename(command[0])} failed ({proc.returncode}): {err.strip()}")
    report = json.loads(out)
    report["exit_code"] = proc.returncode
    load_s = (children1.ru_utime - children0.ru_utime) + (children1.ru_stime - children0.ru_stime)
    watched_s = {p: (process_ticks(p) - t) / TICKS for p, t in watched0.items()}
    cpu1 = cpu_ticks()
    busy_s = (cpu1.processes - cpu0.processes) / TICKS
    report["wall_s"] = wall
    report["load_cpus"] = load_s / wall
    report["watched_cpus"] = {str(p): s / wall for p, s in watched_s.items()}
    report["machine_busy_cpus"] = busy_s / wall
    report["interrupt_cpus"] = (cpu1.interrupts - cpu0.interrupts) / TICKS / wall
    report["steal_cpus"] = (cpu1.steal - cpu0.steal) / TICKS / wall
    report["foreign_cpus"] = max(0.0, busy_s - load_s - sum(watched_s.values())) / wall
    return report


def serve_creating_stream(binary, cluster, replicas, limit_s=30):
    """`msglog serve --sink` creating the stream, retried while a new
    cluster is still settling (at most limit_s)."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            return Serve(binary, ["--sink", cluster.url(), "--nats-stream", STREAM,
                                  "--nats-create-stream", "--nats-replicas", str(replicas)])
        except RuntimeError as e:
            if time.monotonic() > deadline:
                raise
            print(f"retrying: {e}", file=sys.stderr)
            time.sleep(0.5)


def run_case(args, case):
    """One measurement of one case, each with fresh servers."""
    cluster = None
    serve = None
    try:
        if case["sink"] == "file":
            serve = Serve(args.bin, ["--log", "{dir}/m.log"])
            nats_pids = []
        else:
            cluster = Cluster(args.nats_server, case["nodes"])
            nats_pids = cluster.pids()
            # msglog creates the stream as a user would; for the publisher
            # too, so that both write to the same kind of stream.
            serve = serve_creating_stream(args.bin, cluster, case["nodes"])
            if case["tool"] == "publisher":
                serve.stop()
                serve = None
        own = nats_pids + ([serve.proc.pid] if serve else [])
        foreign_before = wait_quiet(args.quiet_wait, own)
        duration = str(args.duration)
        if case["tool"] == "publisher":
            command = [args.publisher, "--server", cluster.url(), "--tasks", str(case["conns"]),
                       "--window", str(case["window"]), "--duration", duration, "--size", "64"]
        else:
            command = [args.bin, "bench", "--port", str(serve.port), "--json", "--conns", str(case["conns"]),
                       "--window", str(case["window"]), "--size", "64", "--duration", duration]
        report = measure(command, own, args.duration * 3 + 60)
        report["foreign_cpus_before"] = foreign_before
        by_pid = report.pop("watched_cpus")
        report["nats_cpus"] = sum(by_pid[str(p)] for p in nats_pids)
        report["msglog_cpus"] = by_pid[str(serve.proc.pid)] if serve else 0.0
        return report
    finally:
        if serve:
            serve.stop()
        if cluster:
            cluster.stop()


def cases():
    out = []
    for conns, window, label in [(50, 16, "50 x 16 in flight"), (1, 1, "1 ping-pong")]:
        for sink, nodes in [("R1", 1), ("R3", 3)]:
            out.append(dict(name=f"{label}, {sink}, msglog", label=label, sink=sink, nodes=nodes,
                            tool="msglog", conns=conns, window=window))
            out.append(dict(name=f"{label}, {sink}, publisher", label=label, sink=sink, nodes=nodes,
                            tool="publisher", conns=conns, window=window))
        out.append(dict(name=f"{label}, file, msglog", label=label, sink="file", nodes=0,
                        tool="msglog", conns=conns, window=window))
    return out


def summarize(runs):
    def med(key, sub=None):
        values = [r[key][sub] if sub else r[key] for r in runs]
        return statistics.median(values)
    return {
        "msgs_per_s": med("msgs_per_s"),
        "runs_msgs_per_s": [r["msgs_per_s"] for r in runs],
        "latency_us_p50": med("latency_us", "p50"),
        "latency_us_p99": med("latency_us", "p99"),
        "nats_cpus": med("nats_cpus"),
        "msglog_cpus": med("msglog_cpus"),
        "load_cpus": med("load_cpus"),
        "machine_busy_cpus": med("machine_busy_cpus"),
        "interrupt_cpus": med("interrupt_cpus"),
        "steal_cpus": med("steal_cpus"),
        "foreign_cpus": med("foreign_cpus"),
        "all_acked": all(r.get("failed", 0) == 0 and r.get("rejected", 0) == 0 and r["exit_code"] == 0
                         for r in runs),
    }


def fmt_rate(x):
    return f"{x:,.0f}"


def fmt_runs(xs):
    return ", ".join(f"{x / 1000:.1f} k" for x in xs)


def table(results):
    by = {c["name"]: c for c in results["cases"]}
    lines = ["| case | stream | msglog acked msgs/s (runs) | plain publisher, same in flight (runs) "
             "| msglog ÷ publisher | p50 msglog / publisher | CPUs: nats-server, msglog, load generator (msglog run) "
             "| CPUs of other processes (msglog / publisher run) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label in ["50 x 16 in flight", "1 ping-pong"]:
        for sink in ["R1", "R3"]:
            m = by.get(f"{label}, {sink}, msglog")
            p = by.get(f"{label}, {sink}, publisher")
            if not m or not p:
                continue
            mm, pm = m["median"], p["median"]
            lines.append(
                f"| {label} | {sink} | **{fmt_rate(mm['msgs_per_s'])}** ({fmt_runs(mm['runs_msgs_per_s'])}) "
                f"| {fmt_rate(pm['msgs_per_s'])} ({fmt_runs(pm['runs_msgs_per_s'])}) "
                f"| {mm['msgs_per_s'] / pm['msgs_per_s']:.2f}× "
                f"| {mm['latency_us_p50']:.0f} / {pm['latency_us_p50']:.0f} µs "
                f"| {mm['nats_cpus']:.2f}, {mm['msglog_cpus']:.2f}, {mm['load_cpus']:.2f} "
                f"| {mm['foreign_cpus']:.2f} / {pm['foreign_cpus']:.2f} |")
        f = by.get(f"{label}, file, msglog")
        if f:
            fm = f["median"]
            lines.append(
                f"| {label} | file (scale) | {fmt_rate(fm['msgs_per_s'])} ({fmt_runs(fm['runs_msgs_per_s'])}) "
                f"| | | {fm['latency_us_p50']:.0f} µs | –, {fm['msglog_cpus']:.2f}, {fm['load_cpus']:.2f} "
                f"| {fm['foreign_cpus']:.2f} |")
    lines += ["", hop_bound_table(by)]
    return "\n".join(lines)


def hop_bound_table(by):
    """For one ping-pong client, the most any front-end could reach: a
    message takes the publisher's round trip to the stream plus the client's
    round trip to the front-end, which the file-sink ping-pong measures (with
    a file write in it, so the bound is if anything generous)."""
    label = "1 ping-pong"
    f = by.get(f"{label}, file, msglog")
    if not f:
        return ""
    lines = ["| stream | publisher msgs/s | file-sink ping-pong msgs/s | one-hop bound, msgs/s "
             "| bound ÷ publisher | msglog msgs/s | msglog ÷ bound |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for sink in ["R1", "R3"]:
        m = by.get(f"{label}, {sink}, msglog")
        p = by.get(f"{label}, {sink}, publisher")
        if not (m and p):
            continue
        pub, hop, got = p["median"]["msgs_per_s"], f["median"]["msgs_per_s"], m["median"]["msgs_per_s"]
        bound = 1 / (1 / pub + 1 / hop)
        lines.append(f"| {sink} | {fmt_rate(pub)} | {fmt_rate(hop)} | {fmt_rate(bound)} | {bound / pub:.2f}× "
                     f"| {fmt_rate(got)} | {got / bound:.2f}× |")
    return "\n".join(lines)


def default_nats_server():
    env = os.environ.get("MSGLOG_NATS_SERVER")
    if env:
        return env
    venv = os.path.join(ROOT, ".venv-nats", "bin", "nats-server")
    return venv if os.path.exists(venv) else (shutil.which("nats-server") or "nats-server")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    ap.add_argument("--bin", default=os.path.join(target, "release", "msglog"),
                    help="msglog binary, a release build with the nats feature")
    ap.add_argument("--publisher", default=os.path.join(target, "release", "examples", "nats_publisher"),
                    help="the nats_publisher example, release build")
    ap.add_argument("--nats-server", default=default_nats_server(),
                    help="nats-server binary (default: $MSGLOG_NATS_SERVER, .venv-nats, PATH)")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "nats-results.json"))
    ap.add_argument("--runs", type=int, default=3, help="runs per case; the report gives the median")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load per run")
    ap.add_argument("--only", help="run only the cases whose name contains this")
    ap.add_argument("--quiet-wait", type=float, default=30.0,
                    help="seconds to wait for an idle machine before each run")
    ap.add_argument("--nice", type=int, default=0,
                    help="scheduling priority of the servers and load generators (negative needs root)")
    args = ap.parse_args()
    set_nice(args.nice)
    # SIGTERM unwinds like Ctrl-C, so that every server started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for path in (args.bin, args.publisher):
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: cargo build --release --all-features --examples")

    selected = [c for c in cases() if not args.only or args.only in c["name"]]
    facts = machine_facts(ROOT, msglog=[args.bin, "--version"], nats_server=[args.nats_server, "--version"])
    results = {"machine": facts, "runs_per_case": args.runs, "duration_s": args.duration,
               "nice": args.nice,
               "cases": [dict(c, runs=[]) for c in selected]}
    # Round-robin: run 1 of every case, then run 2, ..., so that a slow
    # stretch of the shared machine hits all cases alike.
    for i in range(args.runs):
        for entry in results["cases"]:
            r = run_case(args, entry)
            entry["runs"].append(r)
            print(f"{entry['name']:<36} run {i + 1}: {r['msgs_per_s']:>10,.0f} msgs/s  "
                  f"p50 {r['latency_us']['p50']:8.1f} us  nats {r['nats_cpus']:.2f}  msglog {r['msglog_cpus']:.2f}  "
                  f"load {r['load_cpus']:.2f}  other {r['foreign_cpus']:.2f}  irq {r['interrupt_cpus']:.2f}  "
                  f"steal {r['steal_cpus']:.2f} CPUs", file=sys.stderr, flush=True)
    for entry in results["cases"]:
        entry["median"] = summarize(entry["runs"])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(table(results))


if __name__ == "__main__":
    main()
