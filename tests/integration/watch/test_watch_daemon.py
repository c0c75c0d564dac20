"""The daemon with [schedule] mode = "watch": changes within seconds, metrics, refusals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from dirconnector.daemon import Daemon
from dirconnector.errors import ConfigError
from tests.integration.ldap.conftest import ldapmodify
from tests.integration.scim.conftest import TOKEN, ScimServer

from .conftest import ldapdata
from .test_watch_ldap import scim_users, until

pytestmark = pytest.mark.integration


def config(
    tmp_path: Path, slapd: dict[str, str], scim_url: str, name: str, state: str | None = None
) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""
profile = "{name}"
[source]
type = "ldap"
url = "{slapd["SLAPD_URL"]}"
bind_dn = "{slapd["SLAPD_ADMIN_DN"]}"
password_env = "W_LDAP_PW"
backend = "python-ldap"
disabled_filter = "(pwdAccountLockedTime=*)"
[target]
type = "scim"
url = "{scim_url}"
token_env = "W_SCIM_TOKEN"
[sync]
batch_window = "0.2s"
[schedule]
mode = "watch"
[state]
{state or f'path = "{tmp_path / (name + ".db")}"'}
""")
    return path


def test_watch_mode_refuses_a_shared_postgres_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mode = "watch" with a PostgreSQL [state] url is a configuration error naming it."""
    path = config(
        tmp_path,
        {"SLAPD_URL": "ldap://127.0.0.1:9", "SLAPD_ADMIN_DN": "cn=x"},
        "http://127.0.0.1:9/scim",
        "pg",
        state='url = "postgresql://u@127.0.0.1:9/db"\npassword = "x"',
    )
    monkeypatch.setenv("W_LDAP_PW", "x")
    monkeypatch.setenv("W_SCIM_TOKEN", "x")
    with pytest.raises(ConfigError, match=r"schedule\.mode"):
        Daemon([path])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_daemon_watches_two_profiles(
    tmp_path: Path, slapd_rw: dict[str, str], scim_process: ScimServer
) -> None:
    """Two watched profiles in one daemon process: a lock reaches both servers within 2 s;
    /metrics shows the stream mode and the change lag."""
    a = ScimServer(scim_process.port, scim_process.process, "watch-a")
    b = ScimServer(scim_process.port, scim_process.process, "watch-b")
    paths = [config(tmp_path, slapd_rw, a.url, "a"), config(tmp_path, slapd_rw, b.url, "b")]
    port = free_port()
    env = {**os.environ, "W_LDAP_PW": slapd_rw["SLAPD_ADMIN_PASSWORD"], "W_SCIM_TOKEN": TOKEN}
    exe = str(Path(sys.executable).with_name("dirconnector"))
    args = [exe, "daemon", "--health-addr", f"127.0.0.1:{port}"]
    for p in paths:
        args += ["-c", str(p)]
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    try:
        email = ldapdata.email(50)

        def ready() -> bool:
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except requests.RequestException:
                return False
            return text.count("dirconnector_runs_total{profile=") >= 2 and all(
                scim_users(s).get(email, {}).get("active") is True for s in (a, b)
            )

        until(ready, 60)
        until(lambda: all(_positioned(p) for p in paths), 30)
        ldapmodify(
            slapd_rw,
            f"dn: {ldapdata.user_dn(50)}\nchangetype: modify\n"
            f"add: pwdAccountLockedTime\npwdAccountLockedTime: "
            f"{ldapdata.LOCKED}\n",
        )
        until(lambda: all(scim_users(s)[email]["active"] is False for s in (a, b)), 2.0)
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        assert 'dirconnector_stream_mode{mode="syncrepl",profile="a"} 1.0' in metrics
        assert 'dirconnector_change_lag_seconds_count{profile="b"}' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]


def _positioned(path: Path) -> bool:
    import sqlite3

    db = path.with_suffix(".db")
    if not db.exists():
        return False
    with sqlite3.connect(db) as c:
        try:
            rows = c.execute("select * from connector_state").fetchall()
        except sqlite3.Error:
            return False
    return any("stream_position" in str(r) for r in rows)
