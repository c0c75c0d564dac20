"""A display name that is markup renders as text in every page, in a real browser.

Every string field the pages show (names, group names, errors, reasons, skipped entries,
paths, profile names) carries a <script> and an <img onerror>; each page is opened in
Chromium and must show the payload as text, run nothing and fetch nothing. The
e-mail's HTML part and its attached report are opened the same way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dirconnector import notify, report_html, report_runs, status_page
from dirconnector.apply import ApplyReport
from dirconnector.diff import Policy, diff
from dirconnector.guard import Limits
from dirconnector.model import Group, Skipped, Snapshot, User
from dirconnector.outcome import Outcome
from dirconnector.plan import plain
from dirconnector.state import RunRow
from dirconnector.sync import RunResult
from tests.browser import EVIL, Browser

pytestmark = pytest.mark.integration
READY = "document.documentElement.dataset.ready === '1' || !document.getElementById('dc-data')"


def _plan():
    users = [User("e1", "evil@example.com", EVIL, EVIL, EVIL, EVIL),
             User("e2", "renamed@example.com", "r", EVIL)]
    current = Snapshot.build([User("e2", "renamed@example.com", "r", "Old name", ref="r2")])
    desired = Snapshot.build(users, [Group("g1", EVIL, ("e1", "e2"))],
                             [Skipped("user", EVIL, "no email", EVIL)])
    return diff(desired, current, Policy(), frozenset({"r2"}))


def _pages() -> dict[str, str]:
    plan = _plan()
    ctx = report_html.ReportContext(EVIL, "ldap", "scim", Limits())
    row = RunRow("r-1", EVIL, "sync", 1.0, 2.0, "partial",
                 {"plan.create_user": 1, "create_user.failed": 1, f"skipped.{EVIL}": 1}, EVIL)
    entries = [{"seq": i + 1, "at": 1.0, "kind": c.kind, "subject": "x", "ref": "",
                "status": "failed", "error": EVIL, "change": {"kind": c.kind, **plain(c)}}
               for i, c in enumerate(plan.changes)]
    refused = RunRow("r-2", EVIL, "daemon", 1.0, 2.0, "refused", {}, EVIL)
    views = [status_page.ProfileView(EVIL, "refused", EVIL, 2, None, refused, EVIL, None,
                                     [refused, row]),
             status_page.ProfileView("f", "frozen", EVIL, 0, None, None, "", {"at": EVIL})]
    report = ApplyReport([Outcome(plan.changes[0], "failed", EVIL)])
    result = RunResult("r-3", EVIL, "partial", plan, report, error=EVIL)
    return {"plan": report_html.plan_page(plan, ctx, [EVIL]),
            "run": report_runs.run_page(row, entries, ctx),
            "refused-run": report_runs.run_page(refused, [], ctx, plan),
            "result": report_runs.result_page(result, ctx),
            "history": report_runs.history_page([row, refused], ctx, lambda r: f"runs/{r}"),
            "status": status_page.render(views, EVIL)}


def test_markup_in_any_field_renders_as_text_in_every_page(browser: Browser,
                                                           artifacts: Path) -> None:
    """Plan, run (recorded, refused, in memory), history and status pages: inert payload."""
    folder = artifacts / "xss"
    folder.mkdir(exist_ok=True)
    for name, html in _pages().items():
        path = folder / f"{name}.html"
        path.write_text(html)
        browser.open(path.as_uri(), READY)
        browser.assert_inert()
        assert not browser.console_errors, (name, browser.console_errors)
        if name in ("plan", "run"):  # filtering draws the rows again: still text
            browser.type("[data-grid=changes] input[type=search]", "old name")
            browser.wait("document.querySelector('[data-grid=changes] .shown').innerText"
                         ".includes('filtered')")
            browser.assert_inert()


def test_markup_renders_as_text_in_the_mail_and_its_attachment(browser: Browser,
                                                               artifacts: Path) -> None:
    """The notification e-mail's HTML part and attached report, opened in the browser."""
    pages = _pages()
    notice = notify.Notice("failed", EVIL, "partial", "r-3", f"{EVIL}: run partial", 0.0,
                           error=EVIL, reasons=(EVIL,))
    msg = notify.email(notice, "a@example.com", ["b@example.com"], pages["result"])
    folder = artifacts / "xss"
    folder.mkdir(exist_ok=True)
    for name, part in (("mail-body", msg.get_body(("html",))),
                       ("mail-attachment", next(msg.iter_attachments()))):
        path = folder / f"{name}.html"
        path.write_text(part.get_content() if isinstance(part.get_content(), str)
                        else part.get_content().decode())
        browser.open(path.as_uri(), READY)
        browser.assert_inert()
