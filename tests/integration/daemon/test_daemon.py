"""`dirconnector daemon` as a process: schedules, no overlap, signals, reload, health, metrics.

The daemon runs with dirconnector.http's testing switch on (retry back-off waits return
at once; the daemon's own back-off between failed runs is real), its JSON log in a
file, and its health server on a port the kernel picks, read back from that log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from dirconnector.state import SqliteStore
from tests.integration.scim.conftest import TOKEN, ScimServer, start_server
from tests.integration.scim.proxy import FaultProxy

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "directory.json"
EXE = str(Path(sys.executable).with_name("dirconnector"))
DAEMON = [sys.executable, "-c", "import sys; from dirconnector import cli, http; "
          "http.set_testing(True); cli.entry(sys.argv[1:])"]
"""``dirconnector`` with retry back-off that does not wait (a child does not inherit the
switch the test process flips)."""


@pytest.fixture(scope="module")
def scim() -> ScimServer:
    server = start_server("--dynamic-tenants")
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)


def profile(tmp: Path, name: str, url: str, interval: str = "2s", extra: str = "") -> Path:
    directory = tmp / f"{name}.json"
    shutil.copy(EXAMPLES, directory)
    path = tmp / f"{name}.toml"
    path.write_text(f"""
profile = "{name}"
[source]
type = "file"
users = "{directory}"
[target]
type = "scim"
url = "{url}"
token_env = "SCIM_TOKEN"
[state]
path = "{tmp / 'state.db'}"
[schedule]
interval = "{interval}"
full_reconcile = "1h"
{extra}
""")
    return path


def tenant(scim: ScimServer) -> str:
    return ScimServer(scim.port, scim.process, f"d{uuid.uuid4().hex[:10]}").url


@dataclass
class Daemon:
    """A running daemon process and the file its log (stderr) goes to."""

    proc: subprocess.Popen[bytes]
    log: Path

    def err(self) -> str:
        return self.log.read_text(errors="replace")

    def health_url(self) -> str:
        """Where its health server listens, from its own log line (it binds port 0)."""
        found: list[str] = []

        def logged() -> bool:
            found.extend(json.loads(line)["msg"].split(" on ")[-1].rstrip("/")
                         for line in self.err().splitlines()
                         if line.startswith("{") and "health and metrics on" in line)
            return bool(found)

        wait_for(logged)
        return found[0]


def start(tmp: Path, *configs: Path, health: bool = False, addr: str = "127.0.0.1:0") -> Daemon:
    log = tmp / f"daemon-{len(list(tmp.glob('daemon-*.log')))}.log"
    args = [*DAEMON, "--log-format", "json", "daemon"]
    for c in configs:
        args += ["--config", str(c)]
    if health:
        args += ["--health-addr", addr]
    env = {**os.environ, "SCIM_TOKEN": TOKEN, "DIRCONNECTOR_MIN_INTERVAL_SECONDS": "1"}
    with log.open("wb") as err:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)
    return Daemon(proc, log)


def wait_for(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def stop(daemon: Daemon) -> tuple[int, str]:
    daemon.proc.send_signal(signal.SIGTERM)
    code = daemon.proc.wait(timeout=40)
    return code, daemon.err()


def runs(tmp: Path, name: str) -> list:
    store = SqliteStore(tmp / "state.db")
    try:
        return store.runs(name, 100)
    finally:
        store.close()


def test_two_profiles_run_on_their_schedules_and_stop_cleanly(tmp_path, scim):
    """Two profiles each run several times, converge, expose health and metrics, exit 0."""
    a = profile(tmp_path, "alpha", tenant(scim), "1s")
    b = profile(tmp_path, "beta", tenant(scim), "3s")
    daemon = start(tmp_path, a, b, health=True)
    try:
        url = daemon.health_url()
        wait_for(lambda: len(runs(tmp_path, "alpha")) >= 4 and len(runs(tmp_path, "beta")) >= 2)
        health = requests.get(f"{url}/healthz", timeout=5).json()
        assert health["status"] == "ok" and set(health["profiles"]) == {"alpha", "beta"}
        metrics = requests.get(f"{url}/metrics", timeout=5).text
        assert 'dirconnector_runs_total{profile="alpha",result="ok"} 1.0' in metrics
        assert 'dirconnector_changes_total{kind="create_user",profile="beta",status="ok"} 33.0' \
            in metrics
        assert 'dirconnector_objects_read{kind="users",profile="alpha"} 35.0' in metrics
    finally:
        code, err = stop(daemon)
    assert code == 0, err[-2000:]
    alpha = runs(tmp_path, "alpha")
    assert len(alpha) > len(runs(tmp_path, "beta"))
    assert alpha[-1].status == "ok" and {r.status for r in alpha[:-1]} <= {"unchanged"}
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(line.get("run_id") for line in lines), "log lines carry the run id"


def test_overlapping_manual_sync_is_refused_by_the_lock(tmp_path, scim):
    """While the daemon holds a profile's lock, a manual sync is refused with a clear message."""
    cfg = profile(tmp_path, "gamma", tenant(scim), "1s")
    store = SqliteStore(tmp_path / "state.db")
    env = {**os.environ, "SCIM_TOKEN": TOKEN}
    with store.lock("gamma"):
        manual = subprocess.run([EXE, "--config", str(cfg), "sync"], env=env,
                                capture_output=True, text=True, timeout=60)
    store.close()
    assert manual.returncode == 1 and "already running" in manual.stderr


def test_guard_refusal_stays_refused_and_shows_in_health(tmp_path, scim):
    """A refused plan is refused on every tick, visible in /healthz and /metrics."""
    cfg = profile(tmp_path, "delta", tenant(scim), "1s", "[sync]\nremove_missing = true\n")
    daemon = start(tmp_path, cfg, health=True)
    try:
        url = daemon.health_url()
        wait_for(lambda: any(r.status == "ok" for r in runs(tmp_path, "delta")))
        directory = tmp_path / "delta.json"
        data = json.loads(directory.read_text())
        data["users"] = data["users"][:5]
        directory.write_text(json.dumps(data))
        wait_for(lambda: sum(r.status == "refused" for r in runs(tmp_path, "delta")) >= 2)
        health = requests.get(f"{url}/healthz", timeout=5).json()
        assert health["profiles"]["delta"]["state"] == "refused"
        metrics = requests.get(f"{url}/metrics", timeout=5).text
        assert 'dirconnector_refused{profile="delta"} 1.0' in metrics
    finally:
        code, _ = stop(daemon)
    assert code == 0


def test_target_down_then_back_is_survived(tmp_path, scim):
    """With the server down the runs fail and back off; when it returns the profile converges."""
    gate = FaultProxy(scim.port)   # holds its port; refuses connections until started
    cfg = profile(tmp_path, "eps", gate.url + urlsplit(tenant(scim)).path, "1s")
    daemon = start(tmp_path, cfg)
    try:
        wait_for(lambda: sum(r.status == "failed" for r in runs(tmp_path, "eps")) >= 1)
        assert gate.log == []      # refused: nothing reached the server
        gate.start()
        wait_for(lambda: any(r.status == "ok" for r in runs(tmp_path, "eps")), timeout=40)
    finally:
        code, _ = stop(daemon)
        gate.stop()
    assert code == 0
    assert daemon.proc.poll() is not None


def test_sighup_with_a_broken_file_keeps_the_old_config(tmp_path, scim):
    """SIGHUP with a file that no longer validates logs the error and keeps running."""
    cfg = profile(tmp_path, "zeta", tenant(scim), "1s")
    daemon = start(tmp_path, cfg)
    try:
        wait_for(lambda: any(r.status == "ok" for r in runs(tmp_path, "zeta")))
        cfg.write_text(cfg.read_text() + "\n[sync]\nremove_missin = true\n")
        daemon.proc.send_signal(signal.SIGHUP)
        before = len(runs(tmp_path, "zeta"))
        wait_for(lambda: len(runs(tmp_path, "zeta")) >= before + 2)
        assert daemon.proc.poll() is None
    finally:
        code, err = stop(daemon)
    assert code == 0
    assert "keeping the running configuration" in err and "remove_missin" in err


def test_sigterm_mid_run_leaves_a_true_journal_and_the_next_start_converges(tmp_path, scim):
    """SIGTERM during an apply: exit 0, run 'interrupted', journal == server; restart converges."""
    url = tenant(scim)
    cfg = profile(tmp_path, "eta", url, "1h")
    cfg.write_text(cfg.read_text().replace('token_env = "SCIM_TOKEN"',
                                           'token_env = "SCIM_TOKEN"\nbulk = "off"\nconcurrency = 1'))
    directory = tmp_path / "eta.json"
    users = [{"id": f"u{i}", "email": f"user{i}@example.com", "display_name": f"U {i}"}
             for i in range(600)]
    directory.write_text(json.dumps({"users": users, "groups": []}))
    server = ScimServer(scim.port, scim.process, url.split("/")[-2])
    daemon = start(tmp_path, cfg)
    try:
        wait_for(lambda: len(server.all("Users")) >= 20)
    finally:
        code, err = stop(daemon)
    assert code == 0, err[-1000:]
    (run,) = runs(tmp_path, "eta")
    assert run.status == "interrupted"
    store = SqliteStore(tmp_path / "state.db")
    journal = store.journal(run.id)
    store.close()
    on_server = len(server.all("Users"))
    assert 0 < on_server < 600
    assert sum(1 for j in journal if j["status"] == "ok") == on_server
    daemon = start(tmp_path, cfg)
    try:
        wait_for(lambda: any(r.status == "ok" for r in runs(tmp_path, "eta")), timeout=90)
    finally:
        stop(daemon)
    assert len(server.all("Users")) == 600
