"""The HTML reports in a real browser: what an administrator reads, filters and sorts.

Each page comes from the CLI run against the session's scim2-server (a fault proxy in
front of it where changes must fail), is opened from a file:// URL in headless Chromium,
and leaves a screenshot under build/test-artifacts/screenshots.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dirconnector import report_html
from dirconnector.diff import Policy, diff
from dirconnector.guard import Limits, guard
from dirconnector.model import Group, Snapshot, User
from tests.browser import EVIL, Browser
from tests.integration.cli.conftest import Env
from tests.integration.scim.conftest import ScimServer
from tests.integration.scim.proxy import Fault, FaultProxy

pytestmark = pytest.mark.integration
READY = "document.documentElement.dataset.ready === '1'"
SEARCH = "[data-grid=changes] input[type=search]"
SHOWN = "[data-grid=changes] .shown"


def add_mallory(data: dict) -> None:
    """A directory user and group whose names are markup."""
    data["users"].append({"id": "evil-1", "user_name": "mallory", "email": "mallory@example.com",
                          "display_name": EVIL, "active": True})
    data["groups"].append({"id": "evil-g", "name": f"Ops {EVIL}", "members": ["evil-1"],
                           "groups": []})


def test_plan_report_shows_the_plan_and_filters_and_sorts(env: Env, browser: Browser,
                                                           artifacts: Path) -> None:
    """`plan --format html --out` is one file with the summary, the guard's verdict, each
    change with its attributes before and after; typing filters, clicking a column sorts."""
    assert env.run("sync").exit_code == 0
    data = env.edit()
    env.user(data, "alovelace")["display_name"] = "Ada King"
    env.user(data, "ghopper")["active"] = False
    add_mallory(data)
    env.save(data)
    out = artifacts / "plan.html"
    result = env.run("plan", "--format", "html", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "Wrote the plan report" in result.output
    html = out.read_text()
    assert "<link" not in html and "src=\"http" not in html  # nothing to fetch

    browser.open(out.as_uri(), READY)
    text = browser.text()
    assert "dirconnector plan: cli-test" in text
    assert "file → scim" in text
    assert "2 to add, 2 to change, 1 to revoke or remove." in text
    assert "The safety guard allows this plan." in text
    assert "display_name: Ada Lovelace → Ada King" in browser.text("[data-grid=changes]")
    assert browser.cells("changes", 2)[0] == "alovelace@example.com"  # apply order
    browser.assert_inert()
    browser.save("plan-report.png", docs=True)

    browser.type(SEARCH, "hopper")
    browser.wait(f"document.querySelector('{SHOWN}').innerText.includes('filtered')")
    assert browser.cells("changes", 2) == ["ghopper@example.com"]
    assert browser.cells("changes", 1) == ["- revoke user"]
    browser.type(SEARCH, "")
    browser.wait(f"!document.querySelector('{SHOWN}').innerText.includes('filtered')")
    browser.click("[data-grid=changes] th:nth-child(3) button")  # subject, ascending
    subjects = browser.cells("changes", 2)
    assert subjects == sorted(subjects, key=str.lower) and len(subjects) == 5
    browser.click("[data-grid=changes] th:nth-child(3) button")  # descending
    assert browser.cells("changes", 2) == sorted(subjects, key=str.lower, reverse=True)
    browser.click("[data-grid=changes] [role=tab]:nth-child(3)")  # the second kind's tab
    assert len(set(browser.cells("changes", 1))) == 1
    assert not browser.console_errors


def test_plan_report_goes_to_stdout_without_out(env: Env) -> None:
    """Without --out the page is printed, and no plan file is written."""
    result = env.run("plan", "--format", "html")
    assert result.exit_code == 0
    assert result.stdout.startswith("<!DOCTYPE html>") and "</html>" in result.stdout
    assert not list(env.tmp.glob("*.json.plan"))


def _through_proxy(env: Env, proxy: FaultProxy) -> None:
    """The profile talks to the server through ``proxy``, one request per change."""
    env.server = ScimServer(int(proxy.url.rsplit(":", 1)[1]), env.server.process,
                            env.server.tenant)
    env.write_config()
    text = env.config.read_text().replace('token_env = "SCIM_TOKEN"',
                                          'token_env = "SCIM_TOKEN"\nbulk = "off"')
    env.config.write_text(text)


def test_run_report_puts_failures_first_with_their_reason(env: Env, browser: Browser,
                                                          artifacts: Path,
                                                          scim_process: ScimServer) -> None:
    """`history --run ID --format html`: the run's changes, failed ones first with what the
    server said, a status filter, and the skipped entries counted by reason."""
    proxy = FaultProxy(scim_process.port).start()
    try:
        _through_proxy(env, proxy)
        proxy.inject("POST", env.server.path + "/Users", Fault.status_code(400), times=2)
        data = env.edit()
        add_mallory(data)
        data["users"].append({"id": "no-mail", "user_name": "nomail", "email": "",
                              "display_name": "No Mail", "active": True})
        env.save(data)
        result = env.run("sync", "--format", "json")
        assert result.exit_code == 1, result.output
        ran = json.loads(result.stdout)
        run_id, total = ran["run_id"], len(ran["outcomes"])
        failed = sum(1 for o in ran["outcomes"] if o["status"] == "failed")
    finally:
        proxy.stop()
    out = artifacts / "run.html"
    assert env.run("history", "--run", run_id, "--format", "html", "--out",
                   str(out)).exit_code == 0
    browser.open(out.as_uri(), READY)
    text = browser.text()
    assert f"dirconnector run {run_id}" in text and "partial" in text
    # The two refused creates, and the memberships of those two people (if they have any).
    assert failed >= 2 and f"{failed} of {total} change(s) failed" in text
    assert "2 no email" in text  # skipped entries, by reason
    statuses = browser.cells("changes", 5)
    assert statuses[:failed] == ["failed"] * failed and set(statuses[failed:]) == {"ok"}
    assert browser.cells("changes", 1)[:2] == ["+ create user"] * 2
    assert "answered 400: injected" in browser.cells("changes", 6)[0]
    browser.assert_inert()
    browser.save("run-report.png", docs=True)
    browser.eval("(() => { const s = document.querySelector('[data-grid=changes] select'); "
                 "s.value = 'failed'; s.dispatchEvent(new Event('change')); })()")
    assert browser.cells("changes", 5) == ["failed"] * failed
    assert f"of {failed} (filtered from {total})" in browser.text(SHOWN)


def test_history_page_draws_runs_over_time(env: Env, browser: Browser,
                                            artifacts: Path) -> None:
    """`history --format html`: each sync a slot of the SVG chart (refusals marked), every
    run a row of a sortable table."""
    env.run("sync")
    data = env.edit()
    for login in ("alovelace", "ghopper"):
        env.user(data, login)["display_name"] += " Jr"
    env.save(data)
    env.run("sync")
    env.run("sync")  # unchanged
    env.user(data, "ghopper")["active"] = False
    env.save(data)
    env.write_config(max_revocations=0)
    assert env.run("sync").exit_code == 3  # refused
    env.run("plan")  # listed, not drawn
    out = artifacts / "history.html"
    assert env.run("history", "--format", "html", "--out", str(out)).exit_code == 0
    browser.open(out.as_uri(), READY)
    assert browser.eval("document.querySelectorAll('svg g.run').length") == 4
    tips = browser.eval("Array.from(document.querySelectorAll('svg g.run title'))"
                        ".map(t => t.textContent)")
    assert "refused plan of 1" in tips[-1] and "2 change" in tips[1]
    assert browser.eval("document.querySelectorAll('[data-grid=runs] tbody tr').length") == 5
    browser.click("[data-grid=runs] th:nth-child(6) button")  # status
    statuses = browser.cells("runs", 5)
    assert statuses == sorted(statuses)
    assert "refused" in statuses and "planned" in statuses
    browser.save("history.png")


def _big_plan(n: int) -> tuple[object, list[str]]:
    """A plan of about ``n`` changes of every common kind (creates, updates with two
    attributes, revocations, memberships of 500 groups)."""
    users = [User(f"u{i}", f"user{i:06d}@example.com", f"user{i}", f"User {i}", "Given",
                  f"Family {i}", i % 40 != 0) for i in range(int(n * 0.8))]
    server = [User(f"u{i}", f"user{i:06d}@example.com", f"user{i}", f"Old {i}", "Given",
                   f"Old {i}", True, ref=f"r{i}") for i in range(0, len(users), 4)]
    server += [User(f"gone{i}", f"gone{i:06d}@example.com", ref=f"g{i}")
               for i in range(int(n * 0.05))]
    groups = [Group(f"grp{g}", f"Group {g}", tuple(f"u{i}" for i in range(g, len(users), 500)))
              for g in range(500)]
    plan = diff(Snapshot.build(users, groups), Snapshot.build(server),
                Policy(remove_missing=True), frozenset(u.ref for u in server))
    return plan, guard(plan, Limits())


def test_a_100k_change_plan_opens_in_under_3_seconds(browser: Browser, artifacts: Path) -> None:
    """A 100k-change plan report is usable: it opens from file:// in under 3 s, and
    filtering and sorting all of it answer in under a second."""
    plan, refused = _big_plan(125_000)
    assert len(plan.changes) >= 100_000, len(plan.changes)
    out = artifacts / "plan-100k.html"
    t0 = time.perf_counter()
    out.write_text(report_html.plan_page(plan, report_html.ReportContext(
        "big", "ldap", "scim", Limits()), refused))
    render = time.perf_counter() - t0
    loaded = browser.open(out.as_uri(), READY)
    in_page = browser.eval("Number(document.documentElement.dataset.readyMs)") / 1000
    print(f"100k plan: {len(plan.changes):,} changes, {out.stat().st_size / 1e6:.1f} MB, "
          f"rendered in {render:.2f} s, opened in {loaded:.2f} s ({in_page:.2f} s in the page)")
    assert loaded < 3.0 and in_page < 3.0
    assert f"Changes ({len(plan.changes):,})" in browser.text()
    assert len(browser.cells("changes", 0)) == 100

    t0 = time.perf_counter()
    browser.type(SEARCH, "user012345")
    browser.wait(f"document.querySelector('{SHOWN}').innerText.includes('filtered')")
    filtered = time.perf_counter() - t0
    # The person's own changes, and the group that gains them (its member list matches).
    subjects = browser.cells("changes", 2)
    assert "user012345@example.com" in subjects and len(subjects) <= 4, subjects
    assert all("012345" in s or s.startswith("Group ") for s in subjects)
    browser.type(SEARCH, "")
    browser.wait(f"!document.querySelector('{SHOWN}').innerText.includes('filtered')")
    t0 = time.perf_counter()
    browser.click("[data-grid=changes] th:nth-child(3) button")
    browser.wait("document.querySelector('[data-grid=changes] th:nth-child(3)')"
                 ".getAttribute('aria-sort') === 'ascending'")
    sorted_in = time.perf_counter() - t0
    print(f"filter {filtered:.2f} s, sort {sorted_in:.2f} s")
    assert filtered < 1.0 and sorted_in < 1.0
    browser.save("plan-100k.png", full_page=False)
    assert not browser.console_errors
