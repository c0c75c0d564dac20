"""Which events a run raises, what each message holds, and the [notify] settings."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from dirconnector import logs, notify, settings
from dirconnector.errors import ConfigError
from dirconnector.notify_send import Channel, channels, scrub, sign
from dirconnector.notify_settings import ChatChannel
from dirconnector.state import RunRow

EVIL = '<script>alert(1)</script><img src=x onerror="alert(2)">'


@pytest.mark.parametrize(("previous", "status", "streak", "applied", "expected"), [
    (None, "ok", 0, 0, []),
    ("ok", "ok", 0, 5, ["changes"]),
    ("ok", "unchanged", 0, 0, []),
    ("ok", "refused", 0, 0, ["refused"]),
    ("refused", "refused", 0, 0, []),                   # not at every refused tick
    ("ok", "failed", 1, 0, ["failed"]),
    ("failed", "failed", 2, 0, ["failing"]),            # failing_after = 2
    ("failed", "failed", 3, 0, []),
    ("failed", "partial", 2, 4, ["failing", "changes"]),
    ("failed", "no-changes", 0, 0, ["recovered"]),
    ("refused", "ok", 0, 3, ["recovered", "changes"]),
    ("refused", "failed", 1, 0, ["failed"]),
    ("failed", "refused", 0, 0, ["refused"]),
    ("ok", "interrupted", 0, 0, []),
    ("ok", "planned", 0, 0, []),
])
def test_events_for_each_transition(previous, status, streak, applied, expected):
    """Each event is raised once, on the transition that means it."""
    assert notify.events_for(previous, status, streak, 2, applied) == expected


def _row(i: int, status: str, command: str = "sync") -> RunRow:
    return RunRow(f"r{i}", "p", command, float(i), float(i) + 1, status, {}, "")


def test_history_before_skips_plans_and_interruptions():
    """The previous outcome and the failure streak read off the run history (newest first)."""
    rows = [_row(6, "failed"), _row(5, "planned", "plan"), _row(4, "failed", "daemon"),
            _row(3, "interrupted"), _row(2, "partial"), _row(1, "ok")]
    assert notify.history_before(rows, "r6") == ("failed", 3)
    assert notify.history_before(rows, "r1") == (None, 0)
    assert notify.history_before(rows, "unknown") == (None, 0)


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    """X-Dirconnector-Signature: sha256=HMAC(secret, timestamp + "." + body)."""
    body = b'{"event":"failed"}'
    expected = hmac.new(b"k3y", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k3y", "1700000000", body) == f"sha256={expected}"


def _notice(**kw: object) -> notify.Notice:
    base = {"event": "refused", "profile": "corp", "status": "refused", "run_id": "r1",
            "summary": f"corp: {EVIL}", "at": 0.0, "reasons": (EVIL,),
            "commands": {"review": "dirconnector plan", "override": "dirconnector sync --force"}}
    base.update(kw)
    return notify.Notice(**base)  # type: ignore[arg-type]


def test_slack_text_escapes_its_control_characters():
    """&, < and > are escaped (Slack would read <...> as a link or a mention)."""
    text = json.loads(notify.slack_body(_notice()))["text"]
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "Override once: `dirconnector sync --force`" in text


def test_email_html_part_escapes_and_subject_is_one_line():
    """The HTML alternative shows markup as text; the subject never carries a line break."""
    msg = notify.email(_notice(summary="corp: line one\nBcc: x@evil"), "a@b.c", ["d@e.f"],
                       f"<p>{EVIL}</p>")
    assert "\n" not in msg["Subject"] and msg["Bcc"] is None
    html = msg.get_body(("html",)).get_content()
    assert "&lt;script&gt;" in html and "<script>" not in html
    attachment = next(msg.iter_attachments())
    assert attachment.get_filename() == "dirconnector-r1.html"


def test_to_json_has_the_documented_keys():
    """The generic webhook's body: schema version 1, exactly the documented keys."""
    body = json.loads(notify.generic_body(_notice()))
    assert body["schema"] == "dirconnector.notification/1"
    assert list(body) == ["schema", "id", "event", "profile", "run_id", "status", "at", "host",
                          "source", "target", "summary", "reasons", "error",
                          "consecutive_failures", "planned", "applied", "commands", "report_url"]
    assert body["at"] == "1970-01-01T00:00:00Z" and body["error"] is None


def test_chat_urls_are_secrets_given_by_env_or_file(tmp_path, monkeypatch):
    """url_env / url_file resolve like every secret; the values are registered for redaction."""
    monkeypatch.setenv("HOOK", "https://hooks.example.com/services/T/B/s3cr3t-key-123")
    (tmp_path / "teams").write_text("https://teams.example.com/webhook/t-key-456789\n")
    (tmp_path / "u.json").write_text('{"users": []}')
    profile = settings.load(data={
        "source": {"type": "file", "users": str(tmp_path / "u.json")},
        "target": {"type": "scim", "url": "https://scim.example.com", "token": "tok-12345678"},
        "notify": {"slack": [{"url_env": "HOOK"}], "teams": [{"url_file": str(tmp_path / "teams")}],
                   "email": [{"host": "smtp.example.com", "username": "u",
                              "password_env": "HOOK", "sender": "a@b.c", "to": ["x@y.z"]}]},
        "daemon": {"status_token": "status-tok-999"}})
    found = settings.secret_values(profile)
    assert {"https://hooks.example.com/services/T/B/s3cr3t-key-123",
            "https://teams.example.com/webhook/t-key-456789", "status-tok-999"} <= found
    shown = json.dumps(profile.redacted())
    assert "s3cr3t" not in shown and "t-key" not in shown and "status-tok" not in shown
    names = [c.name for c in channels("corp", profile.settings.notify)]
    assert names == ["slack[0] of corp (hooks.example.com)", "teams[0] of corp "
                     "(teams.example.com)", "email[0] of corp (smtp.example.com)"]


def test_no_login_without_tls(tmp_path):
    """security = "none" with a password is refused: it would cross the network in clear."""
    (tmp_path / "u.json").write_text('{"users": []}')
    with pytest.raises(ConfigError, match="send the password in clear"):
        settings.load(data={
            "source": {"type": "file", "users": str(tmp_path / "u.json")},
            "target": {"type": "scim", "url": "https://scim.example.com", "token": "t-12345678"},
            "notify": {"email": [{"host": "mx", "security": "none", "username": "u",
                                  "password": "p-12345678", "sender": "a@b.c",
                                  "to": ["x@y.z"]}]}})


def test_errors_lose_the_channel_url():
    """A delivery error names the channel, never its URL or the key in its path."""
    url = "https://hooks.example.com/services/T0/B0/k3y-abcdef"
    channel = Channel("slack", "slack[0] of corp (hooks.example.com)",
                      ChatChannel.model_validate({"url": url}))
    text = scrub(f"POST hooks.example.com/services/T0/B0/k3y-abcdef answered 404 ({url})",
                 channel)
    assert "k3y" not in text and "<url>" in text
    logs.add_secrets({"other-secret-1234"})
    assert "other-secret-1234" not in scrub("other-secret-1234", channel)
