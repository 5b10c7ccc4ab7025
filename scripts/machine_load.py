"""What the benchmark scripts share: the facts of the machine, the CPU time
of the machine and of processes (from /proc), waiting for a quiet machine,
and the --nice priority of every process they start. Python standard
library only."""

import os
import platform
import subprocess
import sys
import time
from collections import namedtuple

TICKS = os.sysconf("SC_CLK_TCK")

CpuTicks = namedtuple("CpuTicks", "processes interrupts steal")
CpuTicks.__doc__ = """CPU ticks since boot over all CPUs: spent by processes
(user, nice, system), in interrupts and softirqs (loopback TCP is mostly
there), and stolen by the hypervisor."""


def cpu_ticks():
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(x) for x in f.readline().split()[1:9])
    return CpuTicks(user + nice + system, irq + softirq, steal)


def busy_ticks():
    """Every tick the CPUs were not idle."""
    return sum(cpu_ticks())


def process_ticks(pid):
    """CPU ticks (user + system) of `pid`; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except OSError:
        return 0


def wait_quiet(limit_s, own_pids=()):
    """Waits (at most limit_s) until other processes use less than 0.15 CPU
    over a second; returns the CPUs they used in the last second."""
    deadline = time.monotonic() + limit_s
    while True:
        b0, o0 = busy_ticks(), sum(process_ticks(p) for p in own_pids)
        time.sleep(1.0)
        foreign = (busy_ticks() - b0 - (sum(process_ticks(p) for p in own_pids) - o0)) / TICKS
        if foreign < 0.15 or time.monotonic() > deadline:
            return foreign


def command_output(argv):
    """A command's standard output, stripped; None if it cannot run or fails."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_facts(root, **versions):
    """The machine a run was measured on, the commit of `root`, the time,
    and `name=argv` for each program's version to record."""
    model = None
    for line in (command_output(["lscpu"]) or "").splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    with open("/proc/meminfo") as f:
        memory_kib = int(f.readline().split()[1])
    facts = {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "memory_kib": memory_kib,
    }
    facts.update({name: command_output(argv) for name, argv in versions.items()})
    facts["commit"] = command_output(["git", "-C", root, "rev-parse", "--short", "HEAD"])
    facts["date"] = time.strftime("%Y-%m-%d %H:%M %Z")
    return facts


_nice = 0


def set_nice(value):
    """The priority `priority` gives every process started from now on."""
    global _nice
    _nice = value
    if value:
        # With autogroup scheduling, nice only ranks processes within one
        # session; the session's own weight is set here.
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(value))
        except OSError as e:
            print(f"cannot set the autogroup's nice value: {e}", file=sys.stderr)


def priority():
    """preexec_fn of every process started: the --nice priority."""
    if _nice:
        os.setpriority(os.PRIO_PROCESS, 0, _nice)
