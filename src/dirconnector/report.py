"""Rendering: plans, run results, checks and history as rich renderables, JSON, Markdown.

Nothing here prints; the CLI hands what these return to a Console.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Group as RichGroup
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from .checks import CheckReport
from .mapping import short_path
from .model import Skipped, value_of
from .plan import (
    AddMembers,
    Change,
    CreateUser,
    DeleteUser,
    Kept,
    LinkGroup,
    LinkUser,
    Plan,
    RelinkGroup,
    RelinkUser,
    RemoveMembers,
    RenameGroup,
    RevokeUser,
    UpdateUser,
    subject,
)
from .state import RunRow
from .sync import RunResult
from .takeover import summary as takeover_summary

STYLES = {"+": "green", "~": "yellow", "-": "red", ">": "cyan"}
VERBS = {
    "create_user": "create user", "link_user": "link user", "update_user": "update user",
    "restore_user": "restore user", "revoke_user": "revoke user", "delete_user": "delete user",
    "create_group": "create group", "link_group": "link group", "rename_group": "rename group",
    "add_members": "add to group", "remove_members": "remove from group",
    "delete_group": "delete group", "relink_user": "relink", "relink_group": "relink group",
}
PER_KIND_LIMIT = 200


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Control characters shown as escapes: a name never drives the operator's terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def describe(change: Change) -> str:
    """One line saying what a change does, in the operator's words (terminal-safe)."""
    return printable(_describe(change))


def _describe(change: Change) -> str:
    verb = VERBS[change.kind]
    what = subject(change)
    if isinstance(change, CreateUser):
        extra = f" ({change.user.display_name})" if change.user.display_name else ""
        return f"{verb} {what}{extra}"
    if isinstance(change, UpdateUser):
        diffs = ", ".join(f"{short_path(f)}: {b!r} → {value_of(change.user, f)!r}"
                          for f, b in zip(change.fields, change.before, strict=True))
        return f"{verb} {what}: {diffs}"
    if isinstance(change, LinkUser):
        was = f" (was {change.previous_external_id!r})" if change.previous_external_id else ""
        return f"{verb} {what}: existing account gets external id {change.user.external_id!r}{was}"
    if isinstance(change, RelinkUser | RelinkGroup):
        new = change.user.external_id if isinstance(change, RelinkUser) else change.external_id
        return f"{verb} {what}: \"{change.previous_external_id}\" → {new}"
    if isinstance(change, RevokeUser | DeleteUser):
        why = "disabled in the directory" if change.reason == "disabled" else \
            "no longer in the directory"
        return f"{verb} {what} ({why})"
    if isinstance(change, RenameGroup):
        return f"{verb} {change.previous_name!r} → {change.name!r}"
    if isinstance(change, LinkGroup):
        return f"{verb} {what}: existing group gets external id {change.external_id!r}"
    if isinstance(change, AddMembers | RemoveMembers):
        sign = "+" if isinstance(change, AddMembers) else "-"
        names = ", ".join(f"{sign}{m.email}" for m in change.members[:8])
        more = f" … and {len(change.members) - 8} more" if len(change.members) > 8 else ""
        return f"{verb} {what}: {names}{more}"
    return f"{verb} {what}"


def tally_line(plan: Plan) -> str:
    t = plan.tally()
    return f"Plan: {t['add']} to add, {t['change']} to change, {t['remove']} to revoke or remove."


def skipped_summary(skipped: Sequence[Skipped]) -> str:
    if not skipped:
        return ""
    reasons = Counter(s.reason for s in skipped)
    parts = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
    return f"Skipped {len(skipped)} directory entr{'y' if len(skipped) == 1 else 'ies'}: {parts}."


def kept_line(kept: Kept) -> str:
    """One person kept as is, and why (terminal-safe)."""
    detail = f" ({kept.detail})" if kept.detail else ""
    return printable(f"{kept.email or kept.external_id}: {kept.reason}{detail}")


def kept_heading(plan: Plan) -> str:
    return (f"Kept as is ({len(plan.kept)}): left exactly as the server holds them, "
            f"memberships included")


def plan_renderable(plan: Plan, refused: Sequence[str] = (), verbose: bool = False,
                    ) -> RenderableType:
    """Terraform-like: one marked line per change, a closing tally, or 'No changes.'"""
    parts: list[RenderableType] = []
    takeover = takeover_summary(plan)
    if takeover:
        parts.append(Text("\n".join(takeover) + "\n", style="bold cyan"))
    if plan.empty:
        parts.append(Text("No changes. The server matches the directory." if not plan.kept
                          else "No changes to make.", style="bold green"))
    else:
        parts.append(Text("dirconnector will make these changes:\n", style="bold"))
        shown: Counter[str] = Counter()
        hidden: Counter[str] = Counter()
        for change in plan.changes:
            if shown[change.kind] >= PER_KIND_LIMIT and not verbose:
                hidden[change.kind] += 1
                continue
            shown[change.kind] += 1
            line = Text("  ")
            line.append(change.symbol, style=f"bold {STYLES[change.symbol]}")
            line.append(" " + describe(change))
            parts.append(line)
        for kind, n in hidden.items():
            parts.append(Text(f"  … and {n} more {VERBS[kind]} (all in --format json)",
                              style="dim"))
        if plan.notes:
            parts.append(Text(""))
        for note in plan.notes:
            parts.append(Text(f"Note: {note}", style="dim"))
    if plan.kept:
        parts.append(Text("\n" + kept_heading(plan) + ":", style="bold yellow"))
        for k in plan.kept[:None if verbose else PER_KIND_LIMIT]:
            parts.append(Text(f"  = {kept_line(k)}", style="yellow"))
        if len(plan.kept) > PER_KIND_LIMIT and not verbose:
            parts.append(Text(f"  … and {len(plan.kept) - PER_KIND_LIMIT} more (all in "
                              f"--format json)", style="dim"))
    skip = skipped_summary(plan.skipped)
    if skip:
        parts.append(Text("\n" + skip, style="yellow"))
    if not plan.source_complete:
        parts.append(Text("\nThe directory read was incomplete: no removal will be applied.",
                          style="bold red"))
    if not plan.empty:
        parts.append(Text("\n" + tally_line(plan), style="bold"))
    for reason in refused:
        parts.append(Text(f"Refused: {reason}", style="bold red"))
    return RichGroup(*parts)


def result_renderable(result: RunResult) -> RenderableType:
    """What a sync did, after the plan."""
    if result.status == "unchanged":
        return Text("No changes. The directory is unchanged since the last good run "
                    "(use --full to re-read the server).", style="bold green")
    parts: list[RenderableType] = []
    if result.plan is not None:
        parts.append(plan_renderable(result.plan, result.refused))
    rep = result.report
    if rep is not None and rep.outcomes:
        ok = sum(1 for o in rep.outcomes if o.status == "ok")
        undone = [o for o in rep.outcomes if o.status != "ok"]
        skipped = len(undone) - len(rep.failed)
        style = "bold green" if not undone else "bold red"
        total = len(result.plan.changes) if result.plan else ok
        parts.append(Text(f"\nApplied {ok} of {total} change(s); {len(rep.failed)} failed"
                          + (f", {skipped} skipped" if skipped else "") + ".", style=style))
        for o in undone[:20]:
            mark = "!" if o.status == "failed" else "?"
            parts.append(Text(f"  {mark} {describe(o.change)}: {printable(o.error)}",
                              style="red"))
        if len(undone) > 20:
            parts.append(Text(f"  … and {len(undone) - 20} more (dirconnector history "
                              f"--run {result.run_id})", style="red"))
    parts.append(Text(f"run {result.run_id}: {result.status}", style="dim"))
    return RichGroup(*parts)


def plan_markdown(plan: Plan, refused: Sequence[str] = ()) -> str:
    lines = ["# dirconnector plan", ""]
    takeover = takeover_summary(plan)
    if takeover:
        lines += ["```", *takeover, "```", ""]
    if plan.empty:
        lines.append("No changes. The server matches the directory." if not plan.kept
                     else "No changes to make.")
    else:
        lines += ["| | change | subject |", "|---|---|---|"]
        for c in plan.changes:
            lines.append(f"| `{c.symbol}` | {VERBS[c.kind]} | {_md(describe(c))} |")
        lines += ["", f"**{tally_line(plan)}**"]
    if plan.kept:
        lines += ["", f"**{kept_heading(plan)}:**", ""]
        lines += [f"- {_md(kept_line(k))}" for k in plan.kept]
    skip = skipped_summary(plan.skipped)
    if skip:
        lines += ["", skip]
    for note in plan.notes:
        lines += ["", f"> {note}"]
    for reason in refused:
        lines += ["", f"**Refused:** {reason}"]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def result_json(result: RunResult) -> dict[str, Any]:
    out: dict[str, Any] = {"run_id": result.run_id, "profile": result.profile,
                           "status": result.status, "exit_code": result.exit_code,
                           "refused": result.refused, "timings": {
                               k: round(v, 3) for k, v in result.timings.items()}}
    if result.plan is not None:
        out["plan"] = result.plan.to_json()
    if result.report is not None:
        out["outcomes"] = [{"kind": o.change.kind, "subject": subject(o.change),
                            "status": o.status, "error": o.error, "ref": o.ref}
                           for o in result.report.outcomes]
    if result.error:
        out["error"] = result.error
    return out


def dumps(data: Any) -> str:
    """Indented JSON, with each item of a list on one line.

    ``json.dumps(indent=...)`` falls back to the pure-Python encoder: 1 s for a
    10k-change result. Here the outer levels are laid out by hand and every list
    item (a change, an outcome) is encoded by the C encoder on its own line.
    """
    return _pretty(data, "")


def _pretty(value: Any, pad: str) -> str:
    inner = pad + "  "
    if isinstance(value, dict) and value:
        items = (f"{inner}{_flat(str(k))}: {_pretty(v, inner)}" for k, v in value.items())
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list | tuple) and value:
        return "[\n" + ",\n".join(inner + _flat(v) for v in value) + f"\n{pad}]"
    return _flat(value)


_flat = json.JSONEncoder(ensure_ascii=False, default=str).encode
"""One value on one line (one encoder: ``json.dumps`` with options builds one per call)."""


def check_renderable(title: str, report: CheckReport) -> RenderableType:
    table = Table(title=title, show_header=False, box=None, title_justify="left")
    for item in report.items:
        mark = Text("ok", style="green") if item.ok else Text("FAIL", style="bold red")
        table.add_row(mark, item.name, item.detail)
    if report.counts:
        table.add_row("", "counts", ", ".join(f"{k}: {v}" for k, v in report.counts.items()))
    for s in report.samples:
        table.add_row("", "sample", s)
    return table


def preview_renderable(plan: Plan, refused: Sequence[str]) -> RenderableType:
    """``check``'s view of the next sync: its size, who is kept as is, the guard's verdict."""
    table = Table(title="next sync", show_header=False, box=None, title_justify="left")
    t = plan.tally()
    table.add_row(Text("ok", style="green"), "plan",
                  f"{t['add']} to add, {t['change']} to change, {t['remove']} to revoke or "
                  f"remove")
    reasons = Counter(k.reason for k in plan.kept)
    table.add_row(Text("ok", style="green") if not plan.kept else Text("note", style="yellow"),
                  "kept as is", f"{len(plan.kept)}" + (
                      " (" + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) + ")"
                      if reasons else ""))
    for k in plan.kept[:5]:
        table.add_row("", "sample", kept_line(k))
    if refused:
        for reason in refused:
            table.add_row(Text("FAIL", style="bold red"), "safety guard",
                          f"would refuse: {printable(reason)}")
    else:
        table.add_row(Text("ok", style="green"), "safety guard", "would allow it")
    return table


def history_table(rows: Iterable[RunRow], show_profile: bool = False) -> Table:
    cols = ["run", *(["profile"] if show_profile else []), "command", "started", "took",
            "status", "changes", "error"]
    table = Table(*cols)
    table.columns[0].no_wrap = True
    for r in rows:
        took = f"{r.finished - r.started:.1f}s" if r.finished else "…"
        applied = sum(v for k, v in r.counts.items() if k.endswith(".ok"))
        failed = sum(v for k, v in r.counts.items() if k.endswith(".failed"))
        changes = f"{applied} ok" + (f", {failed} failed" if failed else "") + (
            f", {r.counts['kept']} kept as is" if r.counts.get("kept") else "")
        style = {"ok": "green", "failed": "red", "refused": "red", "partial": "yellow"}.get(
            r.status, "")
        cells: list[str | Text] = [r.id, *([r.profile] if show_profile else []), r.command,
                                   _when(r.started), took, Text(r.status, style=style), changes,
                                   printable(r.error[:80])]
        table.add_row(*cells)
    return table


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%m-%d %H:%M:%S")
