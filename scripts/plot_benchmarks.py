#!/usr/bin/env python3
"""Draws the scaling results of scripts/run_benchmarks.py as one SVG.

    python3 scripts/plot_benchmarks.py benchmarks/results.json benchmarks/scaling.svg

Left: acknowledged messages/s against the number of connections (64-byte
messages), one line per window. Right: messages/s and MB/s against the
message size (50 connections, window 16). Both axes logarithmic; each point is
the median of the runs. Python standard library only; the SVG is written by
hand.
"""

import json
import math
import sys
from xml.sax.saxutils import escape

W, H = 980, 450
PANEL_W, PANEL_H = 380, 300
TOP = 70
LEFTS = [80, 570]
COLORS = ["#1f77b4", "#d62728", "#2ca02c"]


def log_ticks(lo, hi):
    """Powers of ten (and 2x, 5x when the range is short) between lo and hi."""
    ticks = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 1.0001:
        for m in ([1, 2, 5] if math.log10(hi / lo) < 3 else [1]):
            v = m * 10 ** e
            if lo * 0.9999 <= v <= hi * 1.0001:
                ticks.append(v)
        e += 1
    return ticks


def human(v):
    for div, suffix in [(1e6, "M"), (1e3, "k")]:
        if v >= div:
            s = f"{v / div:.1f}".rstrip("0").rstrip(".")
            return s + suffix
    return f"{v:g}"


def size_label(v):
    if v >= 1024:
        return f"{round(v / 1024)} KiB"
    return f"{int(v)} B"


class Panel:
    def __init__(self, left, title, xlabel, ylabel, xs, ys, xfmt=human):
        self.left, self.title, self.xlabel, self.ylabel, self.xfmt = left, title, xlabel, ylabel, xfmt
        self.xlo, self.xhi = min(xs), max(xs)
        lo, hi = min(ys), max(ys)
        self.ylo = 10 ** math.floor(math.log10(lo))
        self.yhi = 10 ** math.ceil(math.log10(hi))
        self.out = []

    def x(self, v):
        span = math.log10(self.xhi) - math.log10(self.xlo) or 1
        return self.left + (math.log10(v) - math.log10(self.xlo)) / span * PANEL_W

    def y(self, v):
        span = math.log10(self.yhi) - math.log10(self.ylo) or 1
        return TOP + PANEL_H - (math.log10(v) - math.log10(self.ylo)) / span * PANEL_H

    def axes(self, xticks):
        o = self.out
        o.append(f'<text x="{self.left + PANEL_W / 2}" y="{TOP - 18}" text-anchor="middle" '
                 f'font-weight="bold">{escape(self.title)}</text>')
        o.append(f'<rect x="{self.left}" y="{TOP}" width="{PANEL_W}" height="{PANEL_H}" '
                 f'fill="none" stroke="#333"/>')
        for t in xticks:
            px = self.x(t)
            o.append(f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{TOP + PANEL_H}" stroke="#ddd"/>')
            o.append(f'<text x="{px:.1f}" y="{TOP + PANEL_H + 16}" text-anchor="middle">'
                     f'{escape(self.xfmt(t))}</text>')
        for t in log_ticks(self.ylo, self.yhi):
            py = self.y(t)
            o.append(f'<line x1="{self.left}" y1="{py:.1f}" x2="{self.left + PANEL_W}" y2="{py:.1f}" stroke="#ddd"/>')
            o.append(f'<text x="{self.left - 6}" y="{py + 4:.1f}" text-anchor="end">{human(t)}</text>')
        o.append(f'<text x="{self.left + PANEL_W / 2}" y="{TOP + PANEL_H + 40}" '
                 f'text-anchor="middle">{escape(self.xlabel)}</text>')
        o.append(f'<text transform="translate({self.left - 55},{TOP + PANEL_H / 2}) rotate(-90)" '
                 f'text-anchor="middle">{escape(self.ylabel)}</text>')

    def line(self, points, color, label, index, dash=""):
        o = self.out
        path = " ".join(f"{'M' if i == 0 else 'L'}{self.x(px):.1f},{self.y(py):.1f}"
                        for i, (px, py) in enumerate(points))
        style = f' stroke-dasharray="{dash}"' if dash else ""
        o.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"{style}/>')
        for px, py in points:
            o.append(f'<circle cx="{self.x(px):.1f}" cy="{self.y(py):.1f}" r="3.5" fill="{color}">'
                     f'<title>{escape(label)}: {py:,.0f} at {px:g}</title></circle>')
        ly = TOP + 14 + 18 * index
        lx = self.left + 12
        o.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 24}" y2="{ly - 4}" stroke="{color}" '
                 f'stroke-width="2"{style}/>')
        o.append(f'<text x="{lx + 30}" y="{ly}">{escape(label)}</text>')


def series(results, group, key_x, key_y):
    pts = [(c[key_x], c["median"][key_y]) for c in results["cases"]
           if c["group"] == group and c["median"].get(key_y)]
    return sorted(pts)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot_benchmarks.py RESULTS.json OUT.svg")
    with open(sys.argv[1]) as f:
        results = json.load(f)

    conns = {w: series(results, f"conns-w{w}", "conns", "msgs_per_s") for w in (1, 16)}
    sizes_msgs = series(results, "size", "size", "msgs_per_s")
    sizes_mb = series(results, "size", "size", "mb_per_s")
    if not (conns[1] or conns[16]) or not sizes_msgs:
        sys.exit("no scaling results in " + sys.argv[1] + "; run scripts/run_benchmarks.py without --quick")

    parts = []
    all_c = conns[1] + conns[16]
    p1 = Panel(LEFTS[0], "Throughput by connections (64-byte messages)", "connections",
               "acknowledged messages/s", [x for x, _ in all_c], [y for _, y in all_c])
    p1.axes(sorted({x for x, _ in all_c}))
    for i, w in enumerate((16, 1)):
        if conns[w]:
            p1.line(conns[w], COLORS[i], f"window {w}" + (" (ping-pong)" if w == 1 else ""), i)
    parts += p1.out

    ys = [y for _, y in sizes_msgs] + [y for _, y in sizes_mb]
    p2 = Panel(LEFTS[1], "Throughput by message size (50 conns, window 16)", "payload bytes per message",
               "messages/s, MB/s", [x for x, _ in sizes_msgs], ys, xfmt=size_label)
    p2.axes([x for x, _ in sizes_msgs])
    p2.line(sizes_msgs, COLORS[0], "messages/s", 0)
    p2.line(sizes_mb, COLORS[2], "MB/s of payload", 1, dash="6,4")
    parts += p2.out

    m = results.get("machine", {})
    caption = (f"{m.get('msglog', 'msglog')} ({m.get('commit', '')}), {m.get('nproc', '?')} CPUs "
               f"{m.get('cpu_model', '')}, Linux {m.get('kernel', '')}; server and load generator on the "
               f"same machine over loopback; median of {results.get('runs_per_case', '?')} runs")
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    svg += parts
    svg.append(f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle" fill="#555" font-size="11">'
               f'{escape(caption)}</text>')
    svg.append("</svg>")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
