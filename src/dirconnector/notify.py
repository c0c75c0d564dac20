"""Notifications: tell people when a profile is refused, fails, keeps failing, recovers.

Which events a run raises is decided here, from the run and the one before it
(:func:`events_for`, pure), so that each event is sent once: ``refused`` when a profile
becomes refused (not at every tick it stays so), ``failed`` at the first failure of a
streak, ``failing`` when the streak reaches ``[notify] failing_after``, ``recovered`` at
the first good run after a failure or refusal, and (opted in) ``changes`` after a run that
applied some. The messages are built here too: the generic webhook's JSON (the schema
below, also in the README), Slack's and Teams' incoming-webhook payloads, and an e-mail.
``notify_send`` delivers them, in the background, so a receiver never slows a sync.

Generic webhook body (``schema`` "dirconnector.notification/1")::

    {"schema": "dirconnector.notification/1", "id": "<uuid, the same in every retry>",
     "event": "refused|failed|failing|recovered|changes", "profile": "corp",
     "run_id": "20261204T101500-a1b2c3" | null, "status": "refused", "at": "<ISO 8601 UTC>",
     "host": "<the daemon's host name>", "source": "ldap", "target": "scim",
     "summary": "<one line>", "reasons": ["<guard reason>", ...], "error": "<text>" | null,
     "consecutive_failures": 0, "planned": {"<change kind>": n, ...},
     "applied": {"ok": n, "failed": n, "skipped": n},
     "commands": {"review": "<command>", "override": "<command>"} | null,
     "report_url": "<status page URL of the run's report>" | null}

No secret is in any message: every text passes the log redaction, and no channel's
URL, token or password is ever part of a body.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Literal

from . import logs
from .notify_settings import Event
from .state import RunRow

SCHEMA = "dirconnector.notification/1"
Outcome = Literal["ok", "failed", "refused"]
APPLYING = ("sync", "apply", "daemon")
"""Commands whose runs count for events (a plan or a dry run changes nothing)."""


def outcome_class(status: str) -> Outcome | None:
    """ok, failed or refused; None for a run that says nothing (interrupted, a plan)."""
    if status in ("ok", "no-changes", "unchanged"):
        return "ok"
    if status in ("failed", "partial"):
        return "failed"
    if status == "refused":
        return "refused"
    return None


def events_for(previous: Outcome | None, status: str, streak: int, failing_after: int,
               applied: int) -> list[Event]:
    """The events of a run with ``status``, after a run whose outcome was ``previous``.

    ``streak``: failed runs in a row, this one included; ``applied``: changes it made.
    """
    now = outcome_class(status)
    events: list[Event] = []
    if now == "refused" and previous != "refused":
        events.append("refused")
    if now == "failed":
        if previous != "failed":
            events.append("failed")
        if streak == failing_after:
            events.append("failing")
    if now == "ok" and previous in ("failed", "refused"):
        events.append("recovered")
    if now in ("ok", "failed") and applied:
        events.append("changes")
    return events


def history_before(runs: Sequence[RunRow], run_id: str) -> tuple[Outcome | None, int]:
    """From a profile's runs (newest first): the outcome of the run before ``run_id`` and
    the failed runs in a row ending with it (a one-shot command's memory)."""
    rows = [r for r in runs if r.command in APPLYING]
    at = next((i for i, r in enumerate(rows) if r.id == run_id), None)
    if at is None:
        return None, 0
    previous = next((c for r in rows[at + 1:] if (c := outcome_class(r.status))), None)
    streak = 0
    for r in rows[at:]:
        c = outcome_class(r.status)
        if c == "failed":
            streak += 1
        elif c is not None:
            break
    return previous, streak


@dataclass(frozen=True, slots=True)
class Notice:
    """One event of one run: what every channel formats."""

    event: Event
    profile: str
    status: str
    run_id: str
    summary: str
    at: float
    source: str = ""
    target: str = ""
    reasons: tuple[str, ...] = ()
    error: str = ""
    consecutive_failures: int = 0
    planned: Mapping[str, int] = field(default_factory=dict)
    applied: Mapping[str, int] = field(default_factory=dict)
    commands: Mapping[str, str] = field(default_factory=dict)
    report_url: str = ""
    host: str = field(default_factory=socket.gethostname)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    report: Callable[[], str] | None = field(default=None, compare=False, repr=False)
    """Renders the run's HTML report (an e-mail's attachment), in the sender's thread."""

    def to_json(self) -> dict[str, Any]:
        """The generic webhook's body (module docstring)."""
        return {"schema": SCHEMA, "id": self.id, "event": self.event, "profile": self.profile,
                "run_id": self.run_id or None, "status": self.status,
                "at": dt.datetime.fromtimestamp(self.at, dt.UTC).isoformat(
                    timespec="seconds").replace("+00:00", "Z"),
                "host": self.host, "source": self.source, "target": self.target,
                "summary": self.summary, "reasons": list(self.reasons),
                "error": self.error or None, "consecutive_failures": self.consecutive_failures,
                "planned": dict(self.planned), "applied": dict(self.applied),
                "commands": dict(self.commands) or None, "report_url": self.report_url or None}

    @property
    def title(self) -> str:
        return f"dirconnector · {self.summary}"


def build(profile: Any, events: Sequence[Event], *, status: str, run_id: str, error: str,
          refused: Sequence[str], counts: Mapping[str, int], failures: int,
          report: Callable[[], str] | None = None) -> list[Notice]:
    """The notices of one run of ``profile`` (a settings.Profile), texts redacted."""
    from .status_page import commands

    if not events:
        return []
    planned = {k[5:]: v for k, v in counts.items() if k.startswith("plan.")}
    applied: Counter[str] = Counter(ok=0, failed=0, skipped=0)
    for key, n in counts.items():
        kind, _, outcome = key.rpartition(".")
        if kind in planned and outcome in ("ok", "failed", "skipped"):
            applied[outcome] += n
    settings = profile.settings.notify
    url = f"{settings.status_url.rstrip('/')}/runs/{run_id}" if settings.status_url and run_id \
        else ""
    config = str(profile.path) if profile.path else "dirconnector.toml"
    review, override = commands(config)
    name = profile.name
    error = logs.redact(error)
    summaries = {
        "refused": f"{name}: refused by the safety guard; nothing was changed",
        "failed": f"{name}: run {status}: {_short(error)}",
        "failing": f"{name}: {failures} runs in a row have failed: {_short(error)}",
        "recovered": f"{name}: recovered, the run ended {status}",
        "changes": f"{name}: {applied['ok']:,} change(s) applied"
                   + (f", {applied['failed']:,} failed" if applied["failed"] else ""),
    }
    out = []
    for event in events:
        out.append(Notice(
            event, name, status, run_id, logs.redact(summaries[event]),
            dt.datetime.now(dt.UTC).timestamp(), profile.source.type, profile.target.type,
            tuple(logs.redact(r) for r in refused) if status == "refused" else (),
            "" if status == "refused" else error, failures, planned, dict(applied),
            {"review": review, "override": override} if event == "refused" else {}, url,
            report=report))
    return out


def _short(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# ----------------------------------------------------------------------------- formats

def generic_body(notice: Notice) -> bytes:
    return json.dumps(notice.to_json(), ensure_ascii=False, separators=(",", ":")).encode()


def _slack_text(text: str) -> str:
    """Slack's three control characters (api.slack.com, "Escaping text")."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(notice: Notice) -> bytes:
    """An incoming-webhook message (Slack, and the chat servers that copy its format)."""
    lines = [f"*{_slack_text(notice.title)}*"]
    lines += [f"• {_slack_text(r)}" for r in notice.reasons]
    if notice.commands:
        lines.append(f"Review: `{_slack_text(notice.commands['review'])}`")
        lines.append(f"Override once: `{_slack_text(notice.commands['override'])}`")
    if notice.run_id:
        lines.append(f"Run `{_slack_text(notice.run_id)}`"
                     + (f" · <{notice.report_url}|report>" if notice.report_url else ""))
    return json.dumps({"text": "\n".join(lines)}, ensure_ascii=False).encode()


def teams_body(notice: Notice) -> bytes:
    """An Adaptive Card message, what Teams' incoming webhooks and Workflows accept."""
    facts = [{"title": "Profile", "value": notice.profile},
             {"title": "Status", "value": notice.status},
             {"title": "Run", "value": notice.run_id or "-"},
             {"title": "Host", "value": notice.host}]
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": notice.title, "weight": "Bolder", "size": "Medium",
         "wrap": True, "color": "Good" if notice.event in ("recovered", "changes")
         else "Attention"},
        {"type": "FactSet", "facts": facts}]
    body += [{"type": "TextBlock", "text": f"- {r}", "wrap": True} for r in notice.reasons]
    for label, key in (("Review", "review"), ("Override once", "override")):
        if key in notice.commands:
            body.append({"type": "TextBlock", "text": f"{label}: {notice.commands[key]}",
                         "wrap": True, "fontType": "Monospace"})
    card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard", "version": "1.4", "body": body}
    if notice.report_url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Run report",
                            "url": notice.report_url}]
    message = {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}
    return json.dumps(message, ensure_ascii=False).encode()


def email(notice: Notice, sender: str, to: Sequence[str], report: str | None,
          report_note: str = "") -> EmailMessage:
    """A text message with an HTML alternative and, given, the run's report attached."""
    from .report_html import h

    msg = EmailMessage()
    msg["Subject"] = " ".join(f"[dirconnector] {notice.summary}".split())[:200]
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    msg["Message-ID"] = make_msgid("dirconnector")
    msg["X-Dirconnector-Event"] = notice.event
    lines = [notice.summary, "", f"Profile: {notice.profile}", f"Status: {notice.status}",
             f"Run: {notice.run_id or '-'}", f"Host: {notice.host}"]
    if notice.reasons:
        lines += ["", "Reasons:", *(f"- {r}" for r in notice.reasons)]
    if notice.error:
        lines += ["", f"Error: {notice.error}"]
    for label, key in (("Review the plan", "review"), ("Override once", "override")):
        if key in notice.commands:
            lines += ["", f"{label}:", f"    {notice.commands[key]}"]
    if notice.report_url:
        lines += ["", f"Report: {notice.report_url}"]
    if report_note:
        lines += ["", report_note]
    text = "\n".join(lines) + "\n"
    msg.set_content(text)
    msg.add_alternative(f"<!DOCTYPE html><html><body><pre style=\"font: 14px monospace\">"
                        f"{h(text)}</pre></body></html>", subtype="html")
    if report is not None:
        msg.add_attachment(report.encode(), maintype="text", subtype="html",
                           filename=f"dirconnector-{notice.run_id or notice.profile}.html")
    return msg
