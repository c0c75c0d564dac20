"""Rendering: Terraform-like plan text, tally, 'No changes', Markdown, JSON; log redaction."""

import io
import json
import logging

from rich.console import Console

from dirconnector import logs, report
from dirconnector.diff import Policy, diff
from dirconnector.model import Group, Snapshot, User


def render(renderable) -> str:
    buf = io.StringIO()
    Console(file=buf, width=120, color_system=None).print(renderable)
    return buf.getvalue()


def sample_plan():
    desired = Snapshot.build([User("e1", "new@x.com", display_name="New Person"),
                              User("e2", "old@x.com", display_name="Renamed"),
                              User("e3", "gone@x.com", active=False)],
                             [Group("g1", "Staff", frozenset({"e1", "e2"}))])
    current = Snapshot({"r2": User("e2", "old@x.com", display_name="Old", ref="r2"),
                        "r3": User("e3", "gone@x.com", ref="r3")}, {})
    return diff(desired, current, Policy())


def test_plan_lines_and_tally():
    """Each change is one marked line; the tally closes the plan."""
    text = render(report.plan_renderable(sample_plan()))
    assert "+ create user new@x.com (New Person)" in text
    assert "~ update user old@x.com: display_name: 'Old' → 'Renamed'" in text
    assert "- revoke user gone@x.com (disabled in the directory)" in text
    assert "+ create group Staff" in text
    assert "Plan: 2 to add, 2 to change, 1 to revoke or remove." in text


def test_empty_plan_says_no_changes():
    """An empty plan renders as 'No changes.' and no tally."""
    s = Snapshot.build([])
    text = render(report.plan_renderable(diff(s, Snapshot({}, {}))))
    assert text.startswith("No changes.") and "Plan:" not in text


def test_markdown_table_escapes_pipes():
    """Markdown has one table row per change and escapes | in names."""
    md = report.plan_markdown(sample_plan())
    assert md.count("\n| `") == 5 and "**Plan: 2 to add" in md


def test_skips_are_summarised():
    """Skipped entries are counted by reason under the plan."""
    desired = Snapshot.build([User("a", ""), User("b", "dup@x.com"), User("c", "dup@x.com")])
    text = render(report.plan_renderable(diff(desired, Snapshot({}, {}))))
    assert "Skipped 3 directory entries: 2 duplicate email, 1 no email." in text


def test_log_lines_never_show_secrets():
    """A registered secret is replaced in messages and tracebacks, text and JSON."""
    logs.add_secrets({"hunter2-very-secret"})
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RedactingFilter())
    handler.setFormatter(logs.JsonFormatter())
    log = logging.getLogger("test.redact")
    log.addHandler(handler)
    try:
        log.error("token is %s", "hunter2-very-secret")
        try:
            raise ValueError("bad hunter2-very-secret")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert "hunter2" not in out and out.count("********") >= 2
    assert json.loads(out.splitlines()[0])["msg"] == "token is ********"
