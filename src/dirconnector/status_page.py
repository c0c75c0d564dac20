"""The daemon's status page on ``--health-addr``: read-only HTML for people.

``/``: every profile with its state (ok, refused, failing, frozen; running or pending
between), last and next run, the last plan's size, runs over time, and for a refusal
the exact commands that review and override it. ``/runs/<id>``: one run's report (a
refused run's plan included while the daemon holds it). ``/history``: every run.

Nothing here writes, and no secret is shown: configuration paths, counts, run ids and
the errors the runs recorded (which the log redaction already saw). With
``[daemon] status_token`` these pages ask for it (``Authorization: Bearer TOKEN``, or
Basic with any user name and the token as password, which a browser prompts for);
/healthz and /metrics stay open for probes and scrapers.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import ipaddress
import re
import shlex
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .report_html import (
    LABELS,
    ReportContext,
    context_of,
    csp,
    facts,
    h,
    page,
    tally,
    when,
)
from .report_runs import history_page, run_page
from .state import RunRow

if TYPE_CHECKING:
    from .daemon import Daemon

RUN_ID = re.compile(r"[A-Za-z0-9-]{1,80}")
RECENT = 8
"""Recent runs listed under each profile (the chart draws more)."""
Response = tuple[int, str, bytes, dict[str, str]]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, token: bool) -> str:
    """Why the page is readable by more than this host, or ''."""
    if token or is_loopback(host):
        return ""
    return (f"The status page listens on {host or 'every address'} without a token: anyone "
            f"who can reach this port can read the profiles' names, paths, counts and errors. "
            f"Set [daemon] status_token_env, or bind --health-addr to 127.0.0.1.")


@dataclass
class ProfileView:
    """What the page shows of one profile."""

    name: str
    state: str
    config: str
    failures: int = 0
    next_run: str | None = None
    last: RunRow | None = None
    detail: str = ""
    """The last error, or the refusal's reasons."""
    frozen: dict[str, Any] | None = None
    runs: list[RunRow] = field(default_factory=list)
    """Newest first."""


def gather(daemon: Daemon) -> list[ProfileView]:
    """Every profile's view, from the daemon's memory and its state stores."""
    status = daemon.status()
    views = []
    for name, job in daemon.jobs.items():
        st = status.get(name, {})
        store = daemon.store_for(job.profile)
        runs = store.runs(name, 60)
        frozen = store.frozen(name)
        last_status = job.last.get("status") or (runs[0].status if runs else "")
        if frozen:
            state = "frozen"
        elif st.get("state") == "running":
            state = "running"
        elif last_status == "refused":
            state = "refused"
        elif job.failures or last_status in ("failed", "partial"):
            state = "failing"
        elif last_status:
            state = "ok"
        else:
            state = "pending"
        last = runs[0] if runs else None
        detail = str(job.last.get("error") or (last.error if last else ""))
        views.append(ProfileView(name, state, str(job.path), job.failures, st.get("next_run"),
                                 last, detail, frozen, runs))
    return views


def commands(config: str) -> tuple[str, str]:
    """The commands that review and override a refusal, for this profile's file."""
    base = f"dirconnector --config {shlex.quote(config)}"
    return f"{base} plan --format html --out plan.html", f"{base} sync --force"


def _planned(run: RunRow | None) -> Counter[str]:
    if run is None:
        return Counter()
    return Counter({k[5:]: v for k, v in run.counts.items()
                    if k.startswith("plan.") and k[5:] in LABELS})


def _next(view: ProfileView) -> str:
    if not view.next_run:
        return "-"
    try:
        at = dt.datetime.fromisoformat(view.next_run).timestamp()
    except ValueError:
        return view.next_run
    left = at - time.time()
    return when(at) + (f" (in {left:.0f} s)" if 0 <= left < 3600 else "")


def _last_plan(run: RunRow | None) -> str:
    planned = _planned(run)
    if not planned:
        return "No changes." if run is not None and run.counts else "-"
    return h(tally(planned)) + ' <span class="muted">(' + h(", ".join(
        f"{n:,} {LABELS[k]}" for k, n in sorted(planned.items()))) + ")</span>"


def overview(views: list[ProfileView]) -> str:
    """One line per profile, linking to its section."""
    rows = "".join(
        f'<tr><td class="nowrap"><a href="#profile-{h(v.name)}">{h(v.name)}</a></td>'
        f'<td><span class="badge {h(v.state)}">{h(v.state)}</span></td>'
        f"<td>{h(when(v.last.started)) if v.last else 'never'}</td>"
        f'<td class="nowrap">{h(v.last.status) if v.last else "-"}</td><td>{h(_next(v))}</td>'
        f"<td>{_last_plan(v.last)}</td>"
        f'<td class="num">{v.failures}</td></tr>' for v in views)
    return ("<section><h2>Profiles</h2><table><thead><tr><th>profile</th><th>state</th>"
            "<th>last run</th><th>result</th><th>next run</th><th>last plan</th>"
            f'<th class="num">failures in a row</th></tr></thead><tbody>{rows}</tbody>'
            "</table></section>")


def _profile(view: ProfileView) -> str:
    from .report_chart import runs_chart

    last = view.last
    items = [("state", f'<span class="badge {h(view.state)}">{h(view.state)}</span>'),
             ("configuration", f"<code>{h(view.config)}</code>"),
             ("last run", (f'<a href="runs/{h(last.id)}">{h(last.id)}</a> · {h(last.status)} · '
                           f"{h(when(last.started))}" if last else "never")),
             ("next run", h(_next(view))),
             ("last plan", _last_plan(last))]
    if view.failures:
        items.append(("failures in a row", h(str(view.failures))))
    parts = [facts(items)]
    if view.state == "refused":
        review, override = commands(view.config)
        reasons = "".join(f"<li>{h(r)}</li>" for r in view.detail.split("; ") if r)
        parts.append(f'<div class="verdict warn">Refused by the safety guard: nothing is '
                     f'changed until someone acts.<ul class="reasons">{reasons}</ul></div>'
                     f"<p>Review the plan it refused (or open the "
                     f'<a href="runs/{h(last.id if last else "")}">refused run</a>):</p>'
                     f'<pre class="cmd">{h(review)}</pre>'
                     f"<p>If the plan is right, apply it once despite the limit (or raise the "
                     f"<code>[sync]</code> limit it names):</p>"
                     f'<pre class="cmd">{h(override)}</pre>')
    elif view.state == "failing" and view.detail:
        parts.append(f'<div class="verdict bad">{h(view.detail)}</div>')
    elif view.state == "frozen" and view.frozen:
        parts.append(f'<div class="verdict warn">Handed to the identity provider\'s SCIM on '
                     f'{h(view.frozen.get("at", "?"))} (<code>migrate apply</code>); this profile '
                     f"no longer syncs. <code>dirconnector --config {h(shlex.quote(view.config))} "
                     f"migrate rollback --map FILE</code> undoes it.</div>")
    chart = runs_chart(list(reversed(view.runs)), lambda run_id: f"runs/{run_id}")
    parts.append(f'<div class="chart">{chart}</div>')
    recent = "".join(
        f'<tr><td><a href="runs/{h(r.id)}">{h(r.id)}</a></td><td>{h(r.command)}</td>'
        f'<td><span class="badge {h(r.status)}">{h(r.status)}</span></td>'
        f'<td class="num">{(r.finished - r.started if r.finished else 0):.1f}</td>'
        f"<td>{h(r.error[:140])}</td></tr>" for r in view.runs[:RECENT])
    if recent:
        parts.append("<table><thead><tr><th>recent runs</th><th>command</th><th>status</th>"
                     f'<th class="num">took (s)</th><th>error</th></tr></thead><tbody>{recent}'
                     "</tbody></table>")
    return (f'<section class="profile" id="profile-{h(view.name)}"><h2>{h(view.name)} '
            f'<span class="badge {h(view.state)}">{h(view.state)}</span></h2>'
            + "".join(parts) + "</section>")


def render(views: list[ProfileView], warning: str = "", refresh: int = 30) -> str:
    """The whole status page."""
    states = Counter(v.state for v in views)
    body = []
    if warning:
        body.append(f'<div class="warning">{h(warning)}</div>')
    body.append(overview(views))
    body.extend(_profile(v) for v in views)
    body.append('<p><a href="history">Every run, over time</a> · <a href="healthz">healthz'
                '</a> · <a href="metrics">metrics</a></p>')
    sub = h(f"{len(views)} profile(s): " + ", ".join(f"{n} {s}" for s, n in sorted(
        states.items())) + f" · {when(time.time())} · refreshes every {refresh} s")
    return page("dirconnector status", sub, "\n".join(body),
                head=f'<meta http-equiv="refresh" content="{refresh}">\n')


# ----------------------------------------------------------------------------- serving

def authorised(token: str | None, header: str | None) -> bool:
    """The request carries the token (Bearer, or Basic with it as the password)."""
    if not token:
        return True
    scheme, _, value = (header or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            value = base64.b64decode(value, validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.encode(), token.encode())


SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                    "Cache-Control": "no-store", "X-Frame-Options": "DENY"}


def route(daemon: Daemon, path: str, authorization: str | None) -> Response | None:
    """The response for one of the status pages, or None for another path."""
    path = path.split("?")[0]
    if path not in ("/", "/history") and not path.startswith("/runs/"):
        return None
    if not authorised(daemon.status_token, authorization):
        return (401, "text/plain; charset=utf-8", b"this page needs the status token\n",
                {"WWW-Authenticate": 'Basic realm="dirconnector status", charset="UTF-8"'})
    if path == "/":
        html = render(gather(daemon), daemon.status_warning)
        return _html(200, html, script=False)
    if path == "/history":
        runs = [r for v in gather(daemon) for r in v.runs]
        return _html(200, history_page(runs, None, lambda run_id: f"runs/{run_id}"))
    run_id = path[len("/runs/"):]
    if not RUN_ID.fullmatch(run_id):
        return (404, "text/plain; charset=utf-8", b"no such run\n", dict(SECURITY_HEADERS))
    for job in daemon.jobs.values():
        store = daemon.store_for(job.profile)
        row = store.run(run_id)
        if row is None or row.profile not in daemon.jobs:
            continue
        owner = daemon.jobs[row.profile]
        plan = owner.refused_plan if owner.refused_run == run_id else None
        ctx: ReportContext = context_of(owner.profile)
        return _html(200, run_page(row, store.journal_entries(run_id), ctx, plan))
    return (404, "text/plain; charset=utf-8", b"no such run\n", dict(SECURITY_HEADERS))


def _html(status: int, html: str, script: bool = True) -> Response:
    headers = {**SECURITY_HEADERS, "Content-Security-Policy":
               csp(script) + "; frame-ancestors 'none'"}
    return status, "text/html; charset=utf-8", html.encode(), headers
