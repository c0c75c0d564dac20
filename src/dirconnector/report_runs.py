"""HTML reports of runs: one recorded run, one still in memory, and the run history.

Built from ``report_html``'s pieces (the page, the tables, the summaries), so they look
and behave like the plan's report; the history's chart is ``report_chart``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .plan import Kept, Plan
from .report_html import (
    LABELS,
    ReportContext,
    change_row,
    counts_table,
    grid_section,
    grid_spec,
    h,
    kept_grid,
    kind_index,
    limits_table,
    made_at,
    page,
    plain_grid,
    plan_notes,
    section,
    skipped_grid,
    summary_section,
    tally,
    verdict,
    when,
)
from .state import RunRow


def run_page(run: RunRow, entries: Iterable[dict[str, Any]], ctx: ReportContext,
             plan: Plan | None = None) -> str:
    """``history --run ID --format html``: a recorded run from its journal. ``plan``, when
    the caller still holds it (a refused run's, in the daemon), lists what was not applied."""
    from .plan import _change_from

    kinds = kind_index()
    rows: list[list[Any]] = []
    kept: list[Kept] = []
    done: dict[str, Counter[str]] = {}
    for e in entries:
        payload = dict(e["change"])
        if payload.get("kind") == "kept" or e["kind"] == "kept":
            payload.pop("kind", None)
            try:
                kept.append(Kept(**payload))
            except TypeError:
                kept.append(Kept(e["ref"], "", e["subject"], e["error"]))
            continue
        try:
            change = _change_from(payload)
        except (KeyError, TypeError, ValueError):  # a journal row of another version
            kind = e["kind"] if e["kind"] in kinds else "update_user"
            rows.append([e["seq"], kinds[kind], e["subject"], "", "", e["status"], e["error"]])
            continue
        done.setdefault(change.kind, Counter())[e["status"]] += 1
        rows.append(change_row(e["seq"], change, kinds, e["status"], e["error"]))
    if not rows and plan is not None:
        status = "refused" if run.status == "refused" else "not applied"
        rows = [change_row(i, c, kinds, status) for i, c in enumerate(plan.changes, 1)]
        kept = list(plan.kept)
    return _run_body(run, rows, kept, done, ctx, plan, plan.skipped if plan else None)


def result_page(result: Any, ctx: ReportContext) -> str:
    """The report of a ``sync.RunResult`` still in memory (a notification's attachment)."""
    kinds = kind_index()
    plan: Plan | None = result.plan
    outcomes = {id(o.change): o for o in result.report.outcomes} if result.report else {}
    rows: list[list[Any]] = []
    done: dict[str, Counter[str]] = {}
    pending = "refused" if result.status == "refused" else "not applied"
    for i, c in enumerate(plan.changes if plan else (), 1):
        o = outcomes.pop(id(c), None)
        rows.append(change_row(i, c, kinds, o.status if o else pending, o.error if o else ""))
        if o is not None:
            done.setdefault(c.kind, Counter())[o.status] += 1
    for o in outcomes.values():  # a target that recorded a changed copy of a change
        rows.append(change_row(len(rows) + 1, o.change, kinds, o.status, o.error))
        done.setdefault(o.change.kind, Counter())[o.status] += 1
    run = RunRow(result.run_id, result.profile, "", 0.0, None, result.status, result.counts(),
                 "; ".join(result.refused) or result.error)
    return _run_body(run, rows, list(plan.kept) if plan else [], done, ctx, plan,
                     plan.skipped if plan else None)


def _run_body(run: RunRow, rows: list[list[Any]], kept: list[Kept],
              done: dict[str, Counter[str]], ctx: ReportContext, plan: Plan | None,
              skipped: Sequence[Any] | None) -> str:
    planned = Counter({k[len("plan."):]: v for k, v in run.counts.items()
                       if k.startswith("plan.") and k[len("plan."):] in LABELS})
    if not done:
        for key, n in run.counts.items():
            kind, _, status = key.rpartition(".")
            if kind in LABELS and status in ("ok", "failed", "skipped"):
                done.setdefault(kind, Counter())[status] += n
    failed = sum(c["failed"] for c in done.values())
    took = f"{run.finished - run.started:.1f} s" if run.finished and run.started else "-"
    reads = run.counts.get("source_users")
    skipped_n = run.counts.get("skipped", len(skipped) if skipped is not None else 0)
    reasons = ", ".join(f"{n:,} {k[len('skipped.'):]}" for k, n in sorted(run.counts.items())
                        if k.startswith("skipped."))
    badge = f'<span class="badge {h(run.status)}">{h(run.status)}</span>'
    items = [("run", h(run.id)), ("status", badge)]
    if run.command:
        items.append(("command", h(run.command)))
    items += [("started", h(when(run.started))), ("took", h(took)),
              ("source → target", h(f"{ctx.source} → {ctx.target}"))]
    if reads is not None:
        items.append(("directory read", h(f"{reads:,} users, "
                                          f"{run.counts.get('source_groups', 0):,} groups")))
    items.append(("planned", h(tally(planned) if planned else "No changes.")))
    body = [summary_section(ctx, items)]
    refused = [r for r in run.error.split("; ") if r] if run.status == "refused" else []
    top = verdict(refused, planned_only=False)
    if run.status in ("failed", "partial", "interrupted") and run.error:
        top += f'<div class="verdict bad">{h(run.error)}</div>'
    elif run.status in ("ok", "no-changes", "unchanged"):
        top += f'<div class="verdict ok">Run {h(run.status)}: every change it made is below.</div>'
    body.append(section("Outcome", top + counts_table(planned, done)
                         + (limits_table(ctx.limits, plan) if refused else "")))
    if plan is not None and plan_notes(plan):
        body.append(section("Notes", plan_notes(plan)))
    body.append(grid_section(f"Changes ({len(rows):,}" + (f", {failed:,} failed" if failed
                                                          else "") + ")", "changes",
                              "Failures first, with the server's reason; click a column to "
                              "sort, type to filter."))
    grids = {"changes": grid_spec(rows, with_status=True, empty="This run changed nothing."),
             "kept": kept_grid(kept)}
    body.append(grid_section(f"Kept as is ({len(kept):,})", "kept",
                              "Left exactly as the server held them, memberships included."))
    if skipped is not None:
        grids["skipped"] = skipped_grid(skipped)
        body.append(grid_section(f"Skipped directory entries ({len(skipped):,})", "skipped"))
    else:
        body.append(section(f"Skipped directory entries ({skipped_n:,})",
                             f"<p>{h(reasons or 'none')}. The entries themselves are listed "
                             f"by <code>dirconnector plan --format html</code>.</p>"))
    title = f"dirconnector run {run.id}: {ctx.profile}"
    sub = h(f"{run.status} · started {when(run.started)}") if run.started else h(run.status)
    return page(title, sub, "\n".join(body), grids)


# ----------------------------------------------------------------------------- history

def history_page(runs: Sequence[RunRow], ctx: ReportContext | None,
                 link: Callable[[str], str | None] | None = None, *,
                 title: str = "dirconnector run history") -> str:
    """``history --format html``: per profile, runs over time (inline SVG), then every run."""
    from .report_chart import runs_chart

    by_profile: dict[str, list[RunRow]] = {}
    for r in sorted(runs, key=lambda r: r.started):
        by_profile.setdefault(r.profile, []).append(r)
    body = [section(f"Profile {name}", f'<div class="chart">{runs_chart(rows, link)}</div>')
            for name, rows in by_profile.items()]
    rows = [run_row(r, link) for r in sorted(runs, key=lambda r: -r.started)]
    grid = plain_grid(["run", "profile", "command", "started", "took (s)", "status",
                        "applied", "failed", "planned", "error"], rows, "No runs recorded.",
                       {0: "link", 4: "num", 6: "num", 7: "num", 8: "num"})
    grid["sort"] = [3, -1]
    note = ("Click a run for its report." if link else
            "A run's report: <code>dirconnector history --run ID --format html --out run.html"
            "</code>.")
    body.append(grid_section(f"Runs ({len(runs):,})", "runs", note))
    made = made_at(ctx) if ctx else dt.datetime.now(dt.UTC).timestamp()
    sub = h(f"{len(runs):,} run(s) of {len(by_profile)} profile(s) · made {when(made)}")
    return page(title, sub, "\n".join(body), {"runs": grid})


def run_row(r: RunRow, link: Callable[[str], str | None] | None) -> list[Any]:
    applied = sum(v for k, v in r.counts.items() if k.endswith(".ok") and k[:-3] in LABELS)
    failed = sum(v for k, v in r.counts.items() if k.endswith(".failed"))
    planned = sum(v for k, v in r.counts.items() if k.startswith("plan."))
    took = round(r.finished - r.started, 1) if r.finished else None
    return [[r.id, link(r.id) if link else None], r.profile, r.command,
            dt.datetime.fromtimestamp(r.started, dt.UTC).strftime("%Y-%m-%d %H:%M:%S"), took,
            r.status, applied, failed, planned, r.error[:300]]

