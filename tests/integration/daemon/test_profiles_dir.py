"""`dirconnector daemon --profiles DIR`: every *.toml in DIR is a profile; SIGHUP re-reads it."""

from __future__ import annotations

import signal

import pytest

from .test_daemon import profile, runs, scim, start, stop, tenant, wait_for  # noqa: F401

pytestmark = pytest.mark.integration


def test_sighup_starts_new_files_and_stops_removed_ones(tmp_path, scim):  # noqa: F811
    """A file added to the folder starts at the next SIGHUP; a removed one stops."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    first = profile(tmp_path, "one", tenant(scim), "1s")
    first.rename(folder / "one.toml")
    daemon = start_dir(tmp_path, folder)
    try:
        wait_for(lambda: any(r.status == "ok" for r in runs(tmp_path, "one")))
        profile(tmp_path, "two", tenant(scim), "1s").rename(folder / "two.toml")
        (folder / "one.toml").unlink()
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any(r.status == "ok" for r in runs(tmp_path, "two")))
        stopped = len(runs(tmp_path, "one"))
        wait_for(lambda: len(runs(tmp_path, "two")) >= 3)
        assert len(runs(tmp_path, "one")) <= stopped + 1  # one run may have been in flight
    finally:
        code, err = stop(daemon)
    assert code == 0, err[-2000:]
    assert "profile two: added from" in err and "was removed; no longer scheduled" in err


def start_dir(tmp, folder):
    """The daemon on a folder of profiles (test_daemon.start with --profiles)."""
    import os
    import subprocess

    from tests.integration.scim.conftest import TOKEN

    from .test_daemon import DAEMON, Daemon

    log = tmp / "daemon-dir.log"
    env = {**os.environ, "SCIM_TOKEN": TOKEN, "DIRCONNECTOR_MIN_INTERVAL_SECONDS": "1"}
    with log.open("wb") as err:
        proc = subprocess.Popen([*DAEMON, "--log-format", "json", "daemon", "--profiles",
                                 str(folder)], env=env, stdout=subprocess.DEVNULL, stderr=err)
    return Daemon(proc, log)
