"""What the benchmark scripts share: the CPU time of the machine and of
processes (from /proc), waiting for a quiet machine, and the --nice priority
of every process they start. Python standard library only."""

import os
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
