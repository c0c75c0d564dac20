"""Run history as an inline SVG chart: changes by kind, failures, refusals, duration.

One chart per profile, one slot per run (oldest left), drawn on the server: no chart
library, no script, so it shows in the history page, the daemon's status page and an
e-mail alike. Each run is a stack of the changes it applied (added, changed, linked,
removed; failed ones on top, dark red); a refused run is an orange band with the size of
the plan it refused as a dashed outline; a failed run a red mark; the line is the run's
duration (right axis). Each slot has a tooltip and, given ``link``, links to its report.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence

from .plan import CHANGE_TYPES
from .report_html import h
from .state import RunRow

WIDTH, HEIGHT = 900, 230
LEFT, RIGHT, TOP, BOTTOM = 52, 60, 30, 34
MAX_RUNS = 60
"""Runs one chart draws (the newest); the table under it lists them all."""
APPLYING = ("sync", "apply", "daemon")
"""Commands whose runs are drawn (plans and dry runs change nothing)."""
COLOURS = {"add": "#2e9d4f", "change": "#d99a00", "link": "#1f8fc4", "remove": "#d0453a",
           "failed": "#7a0d0d", "refused": "#e8741c", "duration": "#5b3fa8"}
LEGEND = (("add", "added"), ("change", "changed"), ("link", "linked"), ("remove", "removed"),
          ("failed", "failed"), ("refused", "refused (plan not applied)"),
          ("duration", "duration"))
CLASS = {"+": "add", "~": "change", ">": "link", "-": "remove"}


def _stack(run: RunRow) -> tuple[dict[str, int], int, int]:
    """Applied changes by class, failed changes, and planned changes (refused runs)."""
    applied = dict.fromkeys(("add", "change", "link", "remove"), 0)
    failed = planned = 0
    for key, n in run.counts.items():
        if key.startswith("plan."):
            planned += n
            continue
        kind, _, status = key.rpartition(".")
        if kind not in CHANGE_TYPES:
            continue
        if status == "ok":
            applied[CLASS[CHANGE_TYPES[kind].symbol]] += n
        elif status == "failed":
            failed += n
    return applied, failed, planned


def _axis(top: float) -> tuple[float, int]:
    """A round step and the number of steps (2 to 5) that reach ``top``."""
    if top <= 0:
        return 1.0, 1
    rough = top / 4
    base = 10.0 ** math.floor(math.log10(rough))
    step = float(next(m * base for m in (1, 2, 2.5, 5, 10) if m * base >= rough))
    return step, max(1, math.ceil(top / step - 1e-9))


def _num(value: float, step: float) -> str:
    digits = 0 if step >= 1 else 1 if step >= 0.1 else 2 if step >= 0.01 else 3
    return f"{value:,.{digits}f}"


def _label(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%m-%d %H:%M")


def runs_chart(runs: Sequence[RunRow], link: Callable[[str], str | None] | None = None) -> str:
    """The chart of one profile's runs (given oldest first); '' when none changed anything."""
    shown = [r for r in runs if r.command.split(" ")[0] in APPLYING
             and "--dry-run" not in r.command][-MAX_RUNS:]
    profile = runs[0].profile if runs else ""
    if not shown:
        return '<p class="muted">No sync has run yet.</p>'
    stacks = [_stack(r) for r in shown]
    durations = [(r.finished - r.started) if r.finished else 0.0 for r in shown]
    ystep, yn = _axis(max(max(sum(a.values()) + f, p if r.status == "refused" else 0)
                          for (a, f, p), r in zip(stacks, shown, strict=True)))
    dstep, dn = _axis(max(durations))
    ymax, dmax = ystep * yn, dstep * dn
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = pw / max(len(shown), 12)
    bar = min(28.0, slot * 0.7)

    def y(v: float) -> float:
        return TOP + ph - ph * v / ymax

    def yd(v: float) -> float:
        return TOP + ph - ph * v / dmax

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
           f'width="{WIDTH}" height="{HEIGHT}" role="img" font-family="system-ui, DejaVu Sans, '
           f'sans-serif" font-size="11" aria-label="{h(f"Runs of profile {profile}")}">']
    for i in range(yn + 1):  # the grid and the changes axis (left)
        v = ystep * i
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   f'stroke="#e3e7ee"/><text x="{LEFT - 6}" y="{y(v) + 4:.1f}" '
                   f'text-anchor="end" fill="#5b6475">{_num(v, ystep)}</text>')
    for i in range(dn + 1):  # the duration axis (right)
        d = dstep * i
        out.append(f'<text x="{LEFT + pw + 6}" y="{yd(d) + 4:.1f}" '
                   f'fill="{COLOURS["duration"]}">{_num(d, dstep)} s</text>')
    x_legend = float(LEFT)
    for key, text in LEGEND:
        out.append(f'<rect x="{x_legend:.0f}" y="{TOP - 22}" width="10" height="10" '
                   f'fill="{COLOURS[key]}"/><text x="{x_legend + 14:.0f}" y="{TOP - 13}">{h(text)}'
                   f"</text>")
        x_legend += 26 + 5.9 * len(text)
    points = []
    for i, (r, (applied, failed, planned), took) in enumerate(
            zip(shown, stacks, durations, strict=True)):
        cx = LEFT + slot * i + slot / 2
        x = cx - bar / 2
        tip = (f"{r.id} · {_label(r.started)} UTC · {r.status} · {took:.1f} s · "
               + ", ".join(f"{n:,} {k}" for k, n in applied.items() if n)
               + (f", {failed:,} failed" if failed else "")
               + (f" · refused plan of {planned:,}" if r.status == "refused" else "")
               + (f" · {r.error[:160]}" if r.error else ""))
        parts = [f"<title>{h(tip)}</title>",
                 f'<rect x="{cx - slot / 2:.1f}" y="{TOP}" width="{slot:.1f}" height="{ph}" '
                 f'fill="{COLOURS["refused"] if r.status == "refused" else "transparent"}" '
                 f'fill-opacity="0.14"/>']
        base = 0.0
        for key in ("add", "change", "link", "remove"):
            if applied[key]:
                parts.append(_rect(x, y(base + applied[key]), bar, y(base) - y(base + applied[key]),
                                   COLOURS[key]))
                base += applied[key]
        if failed:
            parts.append(_rect(x, y(base + failed), bar, y(base) - y(base + failed),
                               COLOURS["failed"]))
        if r.status == "refused" and planned:
            parts.append(f'<rect x="{x:.1f}" y="{y(planned):.1f}" width="{bar:.1f}" '
                         f'height="{y(0) - y(planned):.1f}" fill="none" stroke-dasharray="3 2" '
                         f'stroke="{COLOURS["refused"]}" stroke-width="1.5"/>')
        if r.status in ("failed", "partial"):
            parts.append(f'<circle cx="{cx:.1f}" cy="{TOP + 6}" r="4.5" fill="#d0453a"/>')
        if not base and not failed and r.status not in ("refused", "failed"):
            parts.append(_rect(x, y(0) - 1.5, bar, 1.5, "#9aa3b2"))
        group = f'<g class="run">{"".join(parts)}</g>'
        href = link(r.id) if link else None
        out.append(f'<a href="{h(href)}">{group}</a>' if href else group)
        points.append(f"{cx:.1f},{yd(took):.1f}")
    out.append(f'<polyline points="{" ".join(points)}" fill="none" '
               f'stroke="{COLOURS["duration"]}" stroke-width="1.5"/>')
    out.extend(f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2" '
               f'fill="{COLOURS["duration"]}"/>' for p in points)
    out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{TOP + ph}" y2="{TOP + ph}" '
               f'stroke="#8a93a3"/>')
    every = max(1, math.ceil(86 / slot))  # a label is about 70 px wide
    for i in range(0, len(shown), every):
        cx = LEFT + slot * i + slot / 2
        out.append(f'<text x="{cx:.1f}" y="{TOP + ph + 16}" text-anchor="middle" '
                   f'fill="#5b6475">{h(_label(shown[i].started))}</text>')
    out.append(f'<text x="{LEFT}" y="{HEIGHT - 4}" fill="#5b6475">bars: changes per run (left '
               f"axis) · line: duration (right axis)</text>"
               f'<text x="{LEFT + pw}" y="{HEIGHT - 4}" text-anchor="end" fill="#5b6475">'
               f"{len(shown)} run(s), oldest left; times UTC</text></svg>")
    return "".join(out)


def _rect(x: float, y: float, w: float, hgt: float, fill: str) -> str:
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{max(hgt, 0.0):.1f}" '
            f'fill="{fill}"/>')
