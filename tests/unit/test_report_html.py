"""The HTML pages' guarantees that need no browser: escaping, the CSP, the status token."""

from __future__ import annotations

import base64
import hashlib
import json
import re

from dirconnector import report_html, report_runs, status_page
from dirconnector.diff import Policy, diff
from dirconnector.guard import Limits
from dirconnector.model import Group, Skipped, Snapshot, User
from dirconnector.state import RunRow

EVIL = '</script><script>alert(1)</script><img src=x onerror="alert(2)">'


def test_json_for_html_cannot_end_its_script_element():
    """No '<', '>' or '&' survives in the embedded JSON, whatever the strings hold."""
    text = report_html.json_for_html({"a": EVIL, "b": ["&amp;", "<!--"]})
    assert not set(text) & set("<>&")
    assert json.loads(text) == {"a": EVIL, "b": ["&amp;", "<!--"]}


def test_the_csp_allows_exactly_the_report_script():
    """The policy's hash is the inline script's; nothing may connect or load."""
    page = report_html.page("t", "s", "<p>x</p>", {"g": {"rows": []}})
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page
    assert "default-src 'none'" in page and "connect-src" not in page


def _plan():
    users = [User("e1", "evil@example.com", "evil", EVIL), User("u1", "a@example.com")]
    groups = [Group("g1", EVIL, ("e1", "u1"))]
    current = Snapshot.build([User("e1", "evil@example.com", "evil", "Old", ref="r1")])
    desired = Snapshot.build(users, groups, [Skipped("user", EVIL, "no email", EVIL)])
    return diff(desired, current, Policy(), frozenset({"r1"}))


def _outside_data(page: str) -> str:
    return re.sub(r'<script type="application/json" id="dc-data">.*?</script>', "", page,
                  flags=re.S)


def test_directory_strings_never_reach_the_markup_unescaped():
    """Plan, run, history and status pages: a name that is markup stays text."""
    plan = _plan()
    ctx = report_html.ReportContext(EVIL, EVIL, "scim", Limits())
    row = RunRow("r-1", EVIL, EVIL, 1.0, 2.0, "refused", {"plan.create_user": 1}, EVIL)
    views = [status_page.ProfileView(EVIL, "refused", EVIL, 1, None, row, EVIL,
                                     {"at": EVIL}, [row])]
    pages = [report_html.plan_page(plan, ctx, [EVIL]),
             report_runs.run_page(row, [{"seq": 1, "at": 1.0, "kind": "update_user",
                                         "subject": EVIL, "ref": "r1", "status": "failed",
                                         "error": EVIL, "change": {"kind": "update_user"}}],
                                  ctx),
             report_runs.history_page([row], ctx),
             status_page.render(views, EVIL)]
    for page in pages:
        outside = _outside_data(page)
        assert "<script>alert" not in outside and "<img" not in outside
        assert outside.count("<script") <= 1  # the page's own script, when it has tables


def test_status_token_by_bearer_or_basic():
    """The token as a Bearer credential or as a Basic password; anything else is refused."""
    basic = base64.b64encode(b"anyone:tok-1").decode()
    assert status_page.authorised(None, None)
    assert status_page.authorised("tok-1", "Bearer tok-1")
    assert status_page.authorised("tok-1", f"Basic {basic}")
    for header in (None, "", "Bearer tok-2", "Basic !!", "Token tok-1", "Bearer"):
        assert not status_page.authorised("tok-1", header)


def test_warning_only_beyond_loopback_without_token():
    assert status_page.exposure_warning("127.0.0.1", False) == ""
    assert status_page.exposure_warning("::1", False) == ""
    assert status_page.exposure_warning("localhost", False) == ""
    assert status_page.exposure_warning("0.0.0.0", True) == ""
    assert "without a token" in status_page.exposure_warning("0.0.0.0", False)
    assert "without a token" in status_page.exposure_warning("10.1.2.3", False)


def test_refusal_commands_quote_the_path():
    review, override = status_page.commands("/etc/dc/my corp.toml")
    assert review == "dirconnector --config '/etc/dc/my corp.toml' plan --format html " \
                     "--out plan.html"
    assert override == "dirconnector --config '/etc/dc/my corp.toml' sync --force"
