"""HTML reports: the page they share, and the plan's. One self-contained page each.

Self-contained: the stylesheet and the script (``report_assets/``) are inlined, the rows
travel as JSON in a ``<script type="application/json">`` block, and nothing is fetched,
so a page works from a file:// URL and as an e-mail or ticket attachment. The summary
is plain HTML (readable with scripts off); the tables are drawn by the script, which
filters as you type, sorts and shows one page of rows at a time (100k rows stay quick).
Runs and the run history are drawn by ``report_runs`` from the pieces here.

Every string that comes from the directory or the server is escaped here
(:func:`h`) or reaches the page through ``textContent`` in the script, never
``innerHTML``. The page's Content-Security-Policy allows no script but its own (by hash)
and no connection at all, so a value that escaped escaping could still neither run nor
call out.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from . import __version__
from .guard import Limits
from .mapping import short_path
from .model import value_of
from .plan import (
    CHANGE_TYPES,
    PHASES,
    AddMembers,
    Change,
    CreateUser,
    DeleteGroup,
    DeleteUser,
    Kept,
    LinkGroup,
    LinkUser,
    Plan,
    RelinkGroup,
    RelinkUser,
    RemoveMembers,
    RenameGroup,
    RestoreUser,
    RevokeUser,
    UpdateUser,
    subject,
)

KINDS: tuple[str, ...] = tuple(k for phase in PHASES for k in phase)
"""Every change kind, in apply order: the order of the tabs and of the counts."""
LABELS = {
    "create_user": "create user", "link_user": "link user", "update_user": "update user",
    "restore_user": "restore user", "revoke_user": "revoke user", "delete_user": "delete user",
    "create_group": "create group", "link_group": "link group", "rename_group": "rename group",
    "add_members": "add to group", "remove_members": "remove from group",
    "delete_group": "delete group", "relink_user": "relink user", "relink_group": "relink group",
}
STATUS_RANK = {"failed": 0, "skipped": 1, "not applied": 2, "refused": 2, "planned": 3, "ok": 4}
"""Sort order of a run's changes: failures first."""
SYMBOL_CLASS = {"+": "add", "~": "change", "-": "remove", ">": "link"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def h(value: object) -> str:
    """Text for HTML: escaped, control characters shown as ``\\xNN``."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))
    return html.escape(text, quote=True)


@dataclass(frozen=True, slots=True)
class ReportContext:
    """What a report says about where it comes from."""

    profile: str
    source: str
    """The connector's type ("ldap", "azure", ...)."""
    target: str
    """The target's type ("scim", "bitwarden")."""
    limits: Limits | None = None
    """The safety limits as configured now."""
    generated: float = 0.0
    """When the page was made (epoch seconds; 0: now)."""


def context_of(profile: Any, generated: float = 0.0) -> ReportContext:
    """The context of a ``settings.Profile``."""
    from .sync import limits_of

    return ReportContext(profile.name, profile.source.type, profile.target.type,
                         limits_of(profile), generated)


# ----------------------------------------------------------------------------- the page

@cache
def _asset(name: str) -> str:
    return (resources.files("dirconnector") / "report_assets" / name).read_text("utf-8")


def script_hash() -> str:
    """The CSP hash of the report script (the only script a page may run)."""
    digest = hashlib.sha256(_asset("report.js").encode()).digest()
    return "sha256-" + base64.b64encode(digest).decode()


def csp(script: bool = True) -> str:
    """No network, no foreign script: only the page's own inline script and styles."""
    scripts = f"'{script_hash()}'" if script else "'none'"
    return (f"default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; "
            f"img-src data:; base-uri 'none'; form-action 'none'")


def page(title: str, subtitle: str, body: str, grids: dict[str, Any] | None = None, *,
         head: str = "") -> str:
    """A whole page: ``body`` is trusted HTML (built with :func:`h`), ``grids`` data."""
    data = {"grids": grids or {}}
    script = ""
    if grids:
        script = (f'<script type="application/json" id="dc-data">{json_for_html(data)}</script>\n'
                  f"<script>{_asset('report.js')}</script>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{csp(bool(grids))}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"{head}<title>{h(title)}</title>\n<style>{_asset('report.css')}</style></head>\n"
        f'<body><header class="top"><h1>{h(title)}</h1><div class="sub">{subtitle}</div>'
        f"</header>\n<main>\n{body}\n</main>\n"
        f"<footer>dirconnector {h(__version__)}</footer>\n"
        + (f"<noscript><p>Scripts are off: the summary above is complete; the tables need "
           f"them.</p></noscript>\n{script}\n" if grids else "")
        + "</body></html>\n")


def json_for_html(data: Any) -> str:
    """JSON that cannot end the ``<script>`` element it sits in, whatever the strings hold."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def made_at(ctx: ReportContext) -> float:
    return ctx.generated or dt.datetime.now(dt.UTC).timestamp()


def facts(items: Iterable[tuple[str, str]]) -> str:
    """A definition list; values are trusted HTML."""
    return '<dl class="facts">' + "".join(f"<dt>{h(k)}</dt><dd>{v}</dd>" for k, v in items) \
        + "</dl>"


# ----------------------------------------------------------------------------- rows

def kind_index() -> dict[str, int]:
    return {k: i for i, k in enumerate(KINDS)}


def grid_spec(rows: list[list[Any]], *, with_status: bool, empty: str) -> dict[str, Any]:
    """The changes table: #, change, subject, details, directory id[, status, error]."""
    columns = [{"label": "#", "type": "num"}, {"label": "change", "type": "kind"},
               {"label": "subject"}, {"label": "details", "type": "detail"},
               {"label": "directory id"}]
    if with_status:
        columns += [{"label": "status", "type": "status"}, {"label": "error"}]
    return {"columns": columns, "rows": rows, "empty": empty, "pageSize": 100,
            "kinds": [[k, LABELS[k], CHANGE_TYPES[k].symbol] for k in KINDS],
            "kindCol": 1, "statusCol": 5 if with_status else -1, "statusRank": STATUS_RANK,
            "sort": [5, 1] if with_status else [0, 1]}


def detail(change: Change) -> Any:
    """What a change does to its subject: text, {"a": [[field, before, after]]} for
    attribute changes, or {"m": [emails], "s": "+"} for memberships."""
    if isinstance(change, UpdateUser):
        return {"a": [[short_path(f), b, value_of(change.user, f)]
                      for f, b in zip(change.fields, change.before, strict=True)]}
    if isinstance(change, RenameGroup):
        return {"a": [["name", change.previous_name, change.name]]}
    if isinstance(change, AddMembers | RemoveMembers):
        return {"m": [m.email or m.external_id for m in change.members],
                "s": "+" if isinstance(change, AddMembers) else "-"}
    if isinstance(change, CreateUser):
        u = change.user
        parts = [u.display_name, f"user name {u.user_name}" if u.user_name != u.email else "",
                 "" if u.active else "inactive"]
        return ", ".join(p for p in parts if p)
    if isinstance(change, LinkUser | LinkGroup):
        new = change.user.external_id if isinstance(change, LinkUser) else change.external_id
        was = f" (was {change.previous_external_id})" if change.previous_external_id else ""
        return f"existing {'account' if isinstance(change, LinkUser) else 'group'} gets " \
               f"external id {new}{was}"
    if isinstance(change, RelinkUser | RelinkGroup):
        return f"external id was {change.previous_external_id}"
    if isinstance(change, RevokeUser | DeleteUser):
        return "disabled in the directory" if change.reason == "disabled" else \
            "no longer in the directory"
    if isinstance(change, RestoreUser):
        return "active again in the directory"
    if isinstance(change, DeleteGroup):
        return f"{change.member_count} member(s) lose it" if change.member_count else ""
    return ""


def external_id(change: Change) -> str:
    if isinstance(change, AddMembers | RemoveMembers):
        return change.group_external_id
    user = getattr(change, "user", None)
    return str(user.external_id if user is not None else getattr(change, "external_id", ""))


def change_row(seq: int, change: Change, kinds: dict[str, int],
               status: str | None = None, error: str = "") -> list[Any]:
    row = [seq, kinds[change.kind], subject(change), detail(change), external_id(change)]
    if status is not None:
        row += [status, error]
    return row


def kept_grid(kept: Iterable[Kept]) -> dict[str, Any]:
    rows = [[k.email or k.external_id, k.reason, k.detail, k.external_id, k.ref] for k in kept]
    return plain_grid(["person", "reason", "detail", "directory id", "server id"], rows,
                       "Nobody is kept as is.")


def plain_grid(labels: Sequence[str], rows: list[list[Any]], empty: str,
                types: dict[int, str] | None = None) -> dict[str, Any]:
    cols = [{"label": label, **({"type": types[i]} if types and i in types else {})}
            for i, label in enumerate(labels)]
    return {"columns": cols, "rows": rows, "empty": empty, "pageSize": 100, "kinds": [],
            "kindCol": -1, "statusCol": -1, "sort": [0, 1]}


# ----------------------------------------------------------------------------- summaries

def counts_table(planned: Counter[str], done: dict[str, Counter[str]] | None = None,
                 grid: str = "changes") -> str:
    """Changes by kind (each kind a button that shows it in the table), and outcomes."""
    statuses = ("ok", "failed", "skipped")
    head = "<tr><th></th><th>change</th><th class=\"num\">planned</th>" + (
        "".join(f'<th class="num">{s}</th>' for s in statuses) if done is not None else "") \
        + "</tr>"
    body = []
    kinds = kind_index()
    for kind in KINDS:
        if not planned.get(kind) and not (done and done.get(kind)):
            continue
        sym = CHANGE_TYPES[kind].symbol
        cells = (f'<td class="sym sym-{SYMBOL_CLASS[sym]}">{h(sym)}</td>'
                 f'<td><button type="button" class="linkish" data-target="{grid}" '
                 f'data-show-kind="{kinds[kind]}">{h(LABELS[kind])}</button></td>'
                 f'<td class="num">{planned.get(kind, 0):,}</td>')
        if done is not None:
            outcome = done.get(kind, Counter())
            cells += "".join(f'<td class="num{" over" if s == "failed" and outcome[s] else ""}">'
                             f"{outcome[s]:,}</td>" for s in statuses)
        body.append(f"<tr>{cells}</tr>")
    if not body:
        return '<p class="muted">No changes.</p>'
    return f'<table class="counts"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def tally(planned: Counter[str]) -> str:
    add = sum(n for k, n in planned.items() if CHANGE_TYPES[k].symbol == "+")
    remove = sum(n for k, n in planned.items() if CHANGE_TYPES[k].symbol == "-")
    change = sum(planned.values()) - add - remove
    return f"{add:,} to add, {change:,} to change, {remove:,} to revoke or remove."


def verdict(refused: Sequence[str], *, planned_only: bool) -> str:
    if refused:
        what = "would refuse this plan" if planned_only else "refused this run"
        items = "".join(f"<li>{h(r)}</li>" for r in refused)
        return (f'<div class="verdict bad">The safety guard {what}:'
                f'<ul class="reasons">{items}</ul></div>')
    return ('<div class="verdict ok">The safety guard allows this plan.</div>' if planned_only
            else "")


def limits_table(limits: Limits | None, plan: Plan | None) -> str:
    """Each limit as configured, and what the plan asks for against it."""
    if limits is None:
        return ""
    accounts = memberships = None
    if plan is not None:
        accounts, memberships = plan.removals()

    def share(n: int | None, of: int) -> str:
        return "-" if n is None else (f"{n:,} of {of:,} ({n / of:.1%})" if of else f"{n:,}")

    def over(n: int | None, limit: float, of: int = 0, ratio: bool = False) -> str:
        if n is None:
            return ""
        value = n / of if ratio and of else (0 if ratio else n)
        return ' class="over"' if value > limit else ""

    managed = plan.managed_active if plan else 0
    members = plan.managed_memberships if plan else 0
    rows = [
        ("max_revocations", f"{limits.max_revocations:,} accounts",
         "-" if accounts is None else f"{accounts:,}", over(accounts, limits.max_revocations)),
        ("max_revocation_ratio", f"{limits.max_revocation_ratio:.0%} of managed accounts",
         share(accounts, managed), over(accounts, limits.max_revocation_ratio, managed, True)),
        ("max_membership_removals", f"{limits.max_membership_removals:,} memberships",
         "-" if memberships is None else f"{memberships:,}",
         over(memberships, limits.max_membership_removals)),
        ("max_membership_removal_ratio", f"{limits.max_membership_removal_ratio:.0%} of managed "
         "memberships", share(memberships, members),
         over(memberships, limits.max_membership_removal_ratio, members, True)),
        ("min_source_ratio", f"{limits.min_source_ratio:.0%} of the last good read",
         "-" if plan is None else f"{plan.source_users:,} users read", ""),
    ]
    body = "".join(f"<tr><td><code>{h(n)}</code></td><td>{h(c)}</td><td{cls}>{h(v)}</td></tr>"
                   for n, c, v, cls in rows)
    return ('<table class="counts"><thead><tr><th>limit ([sync])</th><th>configured</th>'
            f"<th>this plan</th></tr></thead><tbody>{body}</tbody></table>")


def skipped_grid(skipped: Iterable[Any]) -> dict[str, Any]:
    rows = [[s.kind, s.ref, s.reason, s.detail] for s in skipped]
    return plain_grid(["kind", "entry", "reason", "detail"], rows,
                       "The directory read skipped nothing.")


def section(title: str, inner: str, sid: str = "") -> str:
    ident = f' id="{sid}"' if sid else ""
    return f"<section{ident}><h2>{h(title)}</h2>\n{inner}\n</section>"


def grid_section(title: str, name: str, note: str = "") -> str:
    return section(title, (f'<p class="muted">{note}</p>' if note else "")
                    + f'<div data-grid="{name}"></div>', name)


# ----------------------------------------------------------------------------- plan

def plan_page(plan: Plan, ctx: ReportContext, refused: Sequence[str] = ()) -> str:
    """``plan --format html``: the summary, the guard's verdict, every change, who is kept
    as is and what the read skipped."""
    kinds = kind_index()
    planned = plan.counts()
    rows = [change_row(i, c, kinds) for i, c in enumerate(plan.changes, 1)]
    body = [summary_section(ctx, [
        ("source → target", h(f"{ctx.source} → {ctx.target}")),
        ("directory read", h(f"{plan.source_users:,} users, "
                             + ("complete" if plan.source_complete else
                                "INCOMPLETE: no removal will be applied"))),
        ("managed on the server", h(f"{plan.managed_active:,} active accounts, "
                                    f"{plan.managed_memberships:,} group memberships")),
        ("plan", h(tally(planned) if plan.changes else "No changes.")),
    ])]
    body.append(section("Changes by kind", counts_table(planned)))
    body.append(section("Safety guard", verdict(refused, planned_only=True)
                         + limits_table(ctx.limits, plan)))
    extra = plan_notes(plan)
    if extra:
        body.append(section("Notes", extra))
    body.append(grid_section(f"Changes ({len(plan.changes):,})", "changes",
                              "Sorted in apply order; click a column to sort, type to filter."))
    grids = {"changes": grid_spec(rows, with_status=False, empty="No changes."),
             "kept": kept_grid(plan.kept), "skipped": skipped_grid(plan.skipped)}
    body.append(grid_section(f"Kept as is ({len(plan.kept):,})", "kept",
                              "Left exactly as the server holds them, memberships included."))
    body.append(grid_section(f"Skipped directory entries ({len(plan.skipped):,})", "skipped"))
    title = f"dirconnector plan: {ctx.profile}"
    sub = h(f"{len(plan.changes):,} change(s) · made {when(made_at(ctx))}"
            + (" · REFUSED by the safety guard" if refused else ""))
    return page(title, sub, "\n".join(body), grids)


def summary_section(ctx: ReportContext, items: list[tuple[str, str]]) -> str:
    return section("Summary", facts([("profile", h(ctx.profile)), *items,
                                      ("report made", h(when(made_at(ctx))))]))


def plan_notes(plan: Plan) -> str:
    from .takeover import summary as takeover_summary

    lines = [*takeover_summary(plan), *plan.notes]
    return "".join(f"<p>{h(line)}</p>" for line in lines)
