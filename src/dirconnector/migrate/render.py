"""Rendering a MigrationPlan (and apply / rollback results): rich table, JSON, Markdown.

Nothing here prints; the CLI hands what these return to a Console.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group as RichGroup
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from .plan import GroupVerdict, MemberVerdict, MigrationPlan

LABELS = {
    "adopt_external_id": "adopted by externalId", "adopt_user_name": "adopted by userName",
    "conflict": "conflict / duplicate", "new": "created by the IdP",
    "unmanaged": "stays unmanaged", "matched_external_id": "matched by externalId",
    "matched_display_name": "matched by displayName", "duplicate": "duplicated",
}
STYLES = {"adopt_external_id": "green", "adopt_user_name": "cyan", "conflict": "red",
          "new": "green", "unmanaged": "yellow", "matched_external_id": "green",
          "matched_display_name": "cyan", "duplicate": "red"}
ROW_LIMIT = 200


def counts_line(plan: MigrationPlan) -> str:
    c = plan.counts()
    return (f"Members: {c['members.adopt_external_id']} adopted by externalId, "
            f"{c['members.adopt_user_name']} adopted by userName, {c['members.conflict']} "
            f"conflict, {c['members.new']} new, {c['members.unmanaged']} unmanaged. "
            f"Groups: {c['groups.matched_external_id']} by externalId, "
            f"{c['groups.matched_display_name']} by displayName, {c['groups.duplicate']} "
            f"duplicated, {c['groups.new']} new, {c['groups.unmanaged']} unmanaged. "
            f"Apply changes {c['members.changes']} member and {c['groups.changes']} group "
            f"externalId(s).")


def _id_change(v: MemberVerdict | GroupVerdict) -> str:
    if v.change:
        return f"{v.current_external_id or '(none)'} → {v.idp_external_id}"
    return v.current_external_id or ""


def plan_renderable(plan: MigrationPlan, profile: str, show_all: bool = False,
                    schedule: str = "") -> RenderableType:
    parts: list[RenderableType] = [Text(
        f"Hand-off of profile {profile!r} to {plan.preset.title} SCIM "
        f"({plan.server} server; scope: "
        f"{', '.join(plan.scope.groups) if plan.scope.groups else 'every user read'})",
        style="bold")]
    members = Table("verdict", "member", "IdP userName", "externalId", "why", title="Members",
                    title_justify="left")
    rows = plan.members if show_all else [m for m in plan.members
                                          if m.verdict != "adopt_external_id" or m.change]
    for m in rows[:None if show_all else ROW_LIMIT]:
        members.add_row(Text(LABELS[m.verdict], style=STYLES[m.verdict]), m.email,
                        m.idp_user_name, _id_change(m), m.reason)
    if len(rows) > ROW_LIMIT and not show_all:
        members.add_row("…", f"{len(rows) - ROW_LIMIT} more (--all)", "", "", "")
    parts.append(members)
    groups = Table("verdict", "group", "externalId", "why", title="Groups", title_justify="left")
    for g in plan.groups:
        groups.add_row(Text(LABELS[g.verdict], style=STYLES[g.verdict]), g.name, _id_change(g),
                       g.reason)
    parts.append(groups)
    parts.extend(Text(f"Note: {n}", style="dim") for n in plan.notes)
    parts.append(Text(counts_line(plan), style="bold"))
    parts.append(Text("Checklist:", style="bold"))
    parts.extend(Text(f"  {i}. {item}")
                 for i, item in enumerate(plan.checklist(profile, schedule), 1))
    return RichGroup(*parts)


def plan_json(plan: MigrationPlan, profile: str, schedule: str = "") -> dict[str, Any]:
    out = plan.to_json()
    out["profile"] = profile
    out["checklist"] = plan.checklist(profile, schedule)
    return out


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def plan_markdown(plan: MigrationPlan, profile: str, schedule: str = "") -> str:
    lines = [f"## Hand-off of `{profile}` to {plan.preset.title} SCIM", "",
             f"Scope: {', '.join(plan.scope.groups) or 'every user read'}. "
             f"Server: {plan.server}.", "", counts_line(plan), "",
             "| verdict | member | IdP userName | externalId | why |", "|---|---|---|---|---|"]
    for m in plan.members:
        lines.append(f"| {LABELS[m.verdict]} | {_md(m.email)} | {_md(m.idp_user_name)} | "
                     f"{_md(_id_change(m))} | {_md(m.reason)} |")
    lines += ["", "| verdict | group | externalId | why |", "|---|---|---|---|"]
    for g in plan.groups:
        lines.append(f"| {LABELS[g.verdict]} | {_md(g.name)} | {_md(_id_change(g))} | "
                     f"{_md(g.reason)} |")
    lines += ["", *[f"> {_md(n)}" for n in plan.notes], "", "### Checklist", ""]
    lines += [f"{i}. {_md(item)}"
              for i, item in enumerate(plan.checklist(profile, schedule), 1)]
    return "\n".join(lines) + "\n"


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def outcome_lines(out: Any, verb: str) -> list[str]:
    """What apply or rollback did, one line each, then where the map is."""
    lines = []
    if out.plan is not None:
        lines.append(counts_line(out.plan))
    for row in out.done:
        old, new = (row.old, row.new) if verb == "apply" else (row.new, row.old)
        lines.append(f"  ok  {row.kind} {row.email or row.name}: externalId "
                     f"{old or '(none)'} -> {new or '(none)'}")
    for row, reason in out.failed:
        lines.append(f"  FAILED  {row.kind} {reason}")
    if out.unchanged:
        lines.append(f"  {len(out.unchanged)} already held the old value")
    lines.append(f"Id map: {out.map_path}")
    if verb == "apply":
        lines.append("The profile is frozen: `dirconnector sync` and the daemon refuse it "
                     "until `dirconnector migrate rollback --map FILE`." if out.frozen else
                     "Nothing changed; the profile is not frozen.")
    else:
        lines.append("The profile is unfrozen; syncs may run again." if not out.frozen else
                     "The profile stays frozen (some ids were not restored).")
    return lines


def outcome_json(out: Any, verb: str) -> dict[str, Any]:
    from dataclasses import asdict

    return {"command": f"migrate {verb}", "map": str(out.map_path), "frozen": out.frozen,
            "done": [asdict(r) for r in out.done],
            "unchanged": [asdict(r) for r in out.unchanged],
            "failed": [{**asdict(r), "reason": why} for r, why in out.failed],
            "counts": out.plan.counts() if out.plan is not None else {}}


__all__ = ["counts_line", "dumps", "outcome_json", "outcome_lines", "plan_json",
           "plan_markdown", "plan_renderable"]
