"""Notifications from one-shot `sync` runs, to real receivers on 127.0.0.1.

A generic webhook (signed), Slack- and Teams-style incoming webhooks (one local
endpoint, three paths) and an SMTP server with STARTTLS and a login get exactly one
message per event as a profile goes ok → failing → refused → recovered; every message
is checked field by field and written to the artifacts the secret-leak check reads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import watch_artifacts
from tests.integration.cli.conftest import TOKEN, Env
from tests.integration.cli.conftest import env as env  # a shared fixture
from tests.integration.notify.receivers import (
    Mailbox,
    Webhook,
    closed_port,
    hanging,
    save,
)
from tests.integration.scim.conftest import scim_process as scim_process  # a shared fixture

pytestmark = pytest.mark.integration
HOOK_SECRET = "hmac-key-5f0d2c41a9e7"
SLACK_KEY = "slack-key-XXYYZZ0123456789"
TEAMS_KEY = "teams-key-AABBCC9876543210"
SMTP_PASSWORD = "smtp-password-7b1e9f"
SECRETS = (HOOK_SECRET, SLACK_KEY, TEAMS_KEY, SMTP_PASSWORD, TOKEN)


@pytest.fixture
def receivers(artifacts: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Webhook, Mailbox]]:
    folder = artifacts / "notifications" / request.node.name
    shutil.rmtree(folder, ignore_errors=True)  # messages of this run only
    folder.mkdir(parents=True)
    watch_artifacts(folder, SECRETS)
    hook, box = Webhook(), Mailbox(folder, "notify", SMTP_PASSWORD)
    try:
        yield hook, box
    finally:
        save(folder, hook, box)
        hook.close()
        box.close()


def notify_config(env: Env, hook: Webhook, box: Mailbox, **sync: object) -> None:
    env.write_config(**sync)
    (env.tmp / "teams-url").write_text(f"{hook.url}/teams/{TEAMS_KEY}\n")
    env.config.write_text(env.config.read_text() + f"""
[notify]
failing_after = 2
status_url = "https://dirconnector.example.com/status/"

[[notify.webhook]]
url = "{hook.url}/hook"
secret_env = "HOOK_SECRET"
events = ["refused", "failed", "failing", "recovered", "changes"]

[[notify.slack]]
url_env = "SLACK_URL"

[[notify.teams]]
url_file = "{env.tmp / 'teams-url'}"

[[notify.email]]
host = "127.0.0.1"
port = {box.port}
username = "notify"
password_env = "SMTP_PASSWORD"
sender = "dirconnector@example.com"
to = ["admins@example.com", "security@example.com"]
ca_file = "{box.ca_file}"
""")


def test_one_message_per_event_on_every_channel(env: Env, receivers: tuple[Webhook, Mailbox],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """ok (with changes) → failed → failing → still failing → refused → still refused →
    recovered: each channel gets each of its events once, with the documented fields."""
    hook, box = receivers
    monkeypatch.setenv("HOOK_SECRET", HOOK_SECRET)
    monkeypatch.setenv("SLACK_URL", f"{hook.url}/slack/services/T0/B0/{SLACK_KEY}")
    monkeypatch.setenv("SMTP_PASSWORD", SMTP_PASSWORD)
    notify_config(env, hook, box)
    good = env.directory.read_text()

    def counts() -> tuple[int, int, int, int]:
        return (len(hook.on("/hook")), len(hook.on("/slack")), len(hook.on("/teams")),
                len(box.mails))

    first = env.run("sync", "--format", "json")
    assert first.exit_code == 0, first.output
    assert counts() == (1, 0, 0, 0)  # "changes": only the generic webhook asked for it
    change = hook.on("/hook")[0].json()
    assert change["event"] == "changes" and change["applied"] == {"ok": 47, "failed": 0,
                                                                  "skipped": 0}
    assert change["run_id"] == json.loads(first.stdout)["run_id"]

    env.directory.write_text('{"users": [')  # cut short
    failed = [env.run("sync") for _ in range(3)]
    assert [r.exit_code for r in failed] == [1, 1, 1]
    assert counts() == (3, 2, 2, 2)  # failed, then failing (2 in a row), then nothing

    data = json.loads(good)
    for user in data["users"][:3]:
        user["active"] = False
    env.directory.write_text(json.dumps(data))
    notify_config(env, hook, box, max_revocations=1)
    refused = [env.run("sync", "--format", "json") for _ in range(2)]
    assert [r.exit_code for r in refused] == [3, 3]
    assert counts() == (4, 3, 3, 3)  # refused once, not at every refused run

    env.directory.write_text(good)
    back = env.run("sync", "--format", "json")
    assert back.exit_code == 0, back.output
    assert counts() == (5, 4, 4, 4)

    generic = [p.json() for p in hook.on("/hook")]
    assert [m["event"] for m in generic] == ["changes", "failed", "failing", "refused",
                                             "recovered"]
    for post, m in zip(hook.on("/hook"), generic, strict=True):
        assert set(m) == {"schema", "id", "event", "profile", "run_id", "status", "at", "host",
                          "source", "target", "summary", "reasons", "error",
                          "consecutive_failures", "planned", "applied", "commands",
                          "report_url"}
        assert m["schema"] == "dirconnector.notification/1" and uuid.UUID(m["id"])
        assert m["profile"] == "cli-test" and (m["source"], m["target"]) == ("file", "scim")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m["at"])
        assert m["report_url"] == f"https://dirconnector.example.com/status/runs/{m['run_id']}"
        headers = {k.lower(): v for k, v in post.headers.items()}
        assert headers["x-dirconnector-event"] == m["event"]
        assert headers["x-dirconnector-delivery"] == m["id"]
        stamp = headers["x-dirconnector-timestamp"]
        assert abs(int(stamp) - time.time()) < 120
        expected = hmac.new(HOOK_SECRET.encode(), stamp.encode() + b"." + post.body,
                            hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-dirconnector-signature"], f"sha256={expected}")
    fail, failing, refusal, recovered = generic[1:]
    assert fail["status"] == "failed" and "not valid JSON" in fail["error"]
    assert failing["consecutive_failures"] == 2 and "2 runs in a row" in failing["summary"]
    assert refusal["status"] == "refused" and refusal["error"] is None
    assert refusal["reasons"] == ["the plan would revoke or delete 3 account(s), more than "
                                  "max_revocations = 1"]
    assert refusal["planned"] == {"revoke_user": 3}
    assert refusal["commands"] == {
        "review": f"dirconnector --config {env.config} plan --format html --out plan.html",
        "override": f"dirconnector --config {env.config} sync --force"}
    assert recovered["status"] in ("ok", "no-changes", "unchanged")
    assert refusal["run_id"] == json.loads(refused[0].stdout)["run_id"]

    slack = [p.json() for p in hook.on("/slack")]
    assert all(set(m) == {"text"} for m in slack)
    assert slack[2]["text"].startswith("*dirconnector · cli-test: refused by the safety guard")
    assert f"Override once: `dirconnector --config {env.config} sync --force`" in slack[2]["text"]
    assert "<https://dirconnector.example.com/status/runs/" in slack[2]["text"]
    teams = [p.json() for p in hook.on("/teams")]
    card = teams[2]["attachments"][0]
    assert teams[2]["type"] == "message"
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard"
    assert card["content"]["body"][0]["text"].endswith("refused by the safety guard; nothing "
                                                       "was changed")
    assert card["content"]["actions"][0]["url"] == refusal["report_url"]

    assert box.events() == ["failed", "failing", "refused", "recovered"]
    for mail in box.mails:
        assert mail.tls and mail.login  # STARTTLS, then AUTH
        assert mail.rcpt == ["admins@example.com", "security@example.com"]
        assert mail.message["From"] == "dirconnector@example.com"
        assert str(mail.message["Subject"]).strip().startswith("[dirconnector] cli-test: ")
    mail = box.mails[2].message
    report = next(p for p in mail.iter_attachments())
    assert report.get_filename() == f"dirconnector-{refusal['run_id']}.html"
    page = report.get_content()
    assert "The safety guard refused this run" in page and "revoke_user" in page
    assert "Override once:" in mail.get_body(("plain",)).get_content()

    everything = b"".join(p.body + json.dumps(p.headers).encode() for p in hook.posts) + \
        b"".join(m.raw for m in box.mails)
    for secret in SECRETS:
        assert secret.encode() not in everything


def test_receivers_that_are_down_neither_fail_nor_hold_up_a_sync(
        env: Env, artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A webhook that never answers and a Slack URL that refuses connections: the sync
    exits 0 with its usual output, waiting at most [notify] exit_wait for them."""
    sock, silent = hanging()
    monkeypatch.setenv("SLACK_URL", f"{closed_port()}/services/T0/B0/{SLACK_KEY}")
    env.write_config()
    env.config.write_text(env.config.read_text() + f"""
[notify]
events = ["changes"]
exit_wait = 2
attempts = 3

[[notify.webhook]]
url = "{silent}/hook"
timeout = 1.5

[[notify.slack]]
url_env = "SLACK_URL"
""")
    try:
        started = time.monotonic()
        result = env.run("sync")
        took = time.monotonic() - started
    finally:
        sock.close()
    assert result.exit_code == 0, result.output
    assert "Plan: 40 to add, 7 to change" in result.output
    assert took < 2 + 6, took  # the run itself, then exit_wait at most
    assert "not sent within [notify] exit_wait" in result.output
    assert re.search(r"NOT sent to slack\[0\] of cli-test \(127\.0\.0\.1\) after 3 attempt",
                     result.output)
    assert SLACK_KEY not in result.output
