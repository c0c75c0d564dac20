"""Notifications from the daemon: one per event, counted in /metrics, never in the way.

The daemon (a child process) runs one profile every second with three channels: a
working webhook (every event), a working SMTP server (the default events) and a Slack
URL that accepts connections and never answers. The profile goes ok → failing →
recovered; the runs keep their pace whatever the silent receiver does.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import requests

from tests.conftest import watch_artifacts
from tests.integration.daemon.test_daemon import profile, runs, start, stop
from tests.integration.notify.receivers import Mailbox, Webhook, hanging, save, wait_until
from tests.integration.scim.conftest import TOKEN, ScimServer
from tests.integration.scim.conftest import scim_process as scim_process  # a shared fixture

pytestmark = pytest.mark.integration
SMTP_PASSWORD = "daemon-smtp-password-42"
SLACK_KEY = "daemon-slack-key-0042"


def test_daemon_notifies_once_per_event_and_counts_every_delivery(
        tmp_path: Path, scim_process: ScimServer, artifacts: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhook: changes, failed, failing, recovered once each; e-mail: the default events;
    the silent Slack receiver's messages fail and are counted, and runs go on every second."""
    folder = artifacts / "notifications" / "daemon"
    shutil.rmtree(folder, ignore_errors=True)  # messages of this run only
    folder.mkdir(parents=True)
    watch_artifacts(folder, (SMTP_PASSWORD, SLACK_KEY, TOKEN))
    hook, box = Webhook(), Mailbox(folder, "notify", SMTP_PASSWORD)
    sock, silent = hanging()
    monkeypatch.setenv("SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("SLACK_URL", f"{silent}/services/T0/B0/{SLACK_KEY}")
    tenant = ScimServer(scim_process.port, scim_process.process, "notifydaemon").url
    config = profile(tmp_path, "nd", tenant, "1s", f"""
[notify]
failing_after = 2
attempts = 2

[[notify.webhook]]
url = "{hook.url}/hook"
events = ["refused", "failed", "failing", "recovered", "changes"]

[[notify.slack]]
url_env = "SLACK_URL"
timeout = 0.5

[[notify.email]]
host = "127.0.0.1"
port = {box.port}
username = "notify"
password_env = "SMTP_PASSWORD"
sender = "dirconnector@example.com"
to = ["admins@example.com"]
ca_file = "{box.ca_file}"
""")
    directory = tmp_path / "nd.json"
    good = directory.read_text()
    daemon = start(tmp_path, config, health=True)
    try:
        url = daemon.health_url()

        def hooked() -> list[str]:
            return [p.json()["event"] for p in hook.posts]

        wait_until(lambda: hooked() == ["changes"])
        directory.write_text('{"users": [')
        wait_until(lambda: hooked() == ["changes", "failed", "failing"])
        directory.write_text(good)
        wait_until(lambda: hooked()[-1:] == ["recovered"])
        wait_until(lambda: box.events() == ["failed", "failing", "recovered"])
        n = len(runs(tmp_path, "nd"))
        wait_until(lambda: len(runs(tmp_path, "nd")) >= n + 2, timeout=10)  # still on time

        def metric(event: str, channel: str, result: str) -> float:
            text = requests.get(f"{url}/metrics", timeout=10).text
            found = re.search(rf'dirconnector_notifications_total\{{channel="{channel}",'
                              rf'event="{event}",result="{result}"\}} (\S+)', text)
            return float(found.group(1)) if found else 0.0

        wait_until(lambda: metric("recovered", "slack", "failed") == 1.0, timeout=20)
        for event in ("changes", "failed", "failing", "recovered"):
            assert metric(event, "webhook", "sent") == 1.0
            assert metric(event, "slack", "failed") == (event != "changes")  # default events
        assert metric("failed", "email", "sent") == 1.0
        assert hooked() == ["changes", "failed", "failing", "recovered"]  # nothing twice
    finally:
        code, err = stop(daemon)
        sock.close()
        save(folder, hook, box)
        hook.close()
        box.close()
    assert code == 0, err[-2000:]
    durations = [r.finished - r.started for r in runs(tmp_path, "nd") if r.finished]
    assert max(durations) < 2.0, durations  # a silent receiver never lengthens a run
    logged = [json.loads(line)["msg"] for line in err.splitlines() if line.startswith("{")]
    assert any(re.match(r"notification \w+ of profile nd \(run \S+\) NOT sent to slack\[0\] "
                        r"of nd \(127\.0\.0\.1\) after 2 attempt", m) for m in logged)
    assert SLACK_KEY not in err and SMTP_PASSWORD not in err
