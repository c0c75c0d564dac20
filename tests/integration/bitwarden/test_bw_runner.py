"""File directory -> bitwarden target through the core runner (dirconnector.sync)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dirconnector import settings
from dirconnector.state import SqliteStore
from dirconnector.sync import Runner
from tests.emulators.bitwarden.server import BitwardenServer

pytestmark = pytest.mark.integration


def runner(server: BitwardenServer, tmp_path: Path, users: list[dict[str, Any]],
           groups: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
           **sync: Any) -> Runner:
    directory = tmp_path / "directory.json"
    directory.write_text(json.dumps({"users": users, "groups": groups}))
    monkeypatch.setenv("BW_TEST_SECRET", server.client_secret)
    profile = settings.load(data={
        "profile": "bw", "source": {"type": "file", "users": str(directory)},
        "target": {"type": "bitwarden", "server_url": server.url,
                   "client_id": server.client_id, "client_secret_env": "BW_TEST_SECRET"},
        "sync": sync, "state": {"path": str(tmp_path / "state.db")}})
    return Runner(profile, SqliteStore(profile.settings.state.path))


USERS = [{"id": f"u{i}", "email": f"person{i}@example.com", "active": True}
         for i in range(1, 21)]                  # 1 revocation stays under the 10% limit
GROUPS = [{"id": "g1", "name": "Staff", "members": ["u1", "u2", "u3"], "groups": ["g2"]},
          {"id": "g2", "name": "Interns", "members": ["u6"]}]


def test_sync_then_nothing_to_do(bw_server: BitwardenServer, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The first sync sends one import; the second run plans nothing and sends nothing."""
    first = runner(bw_server, tmp_path, USERS, GROUPS, monkeypatch).run("sync")
    assert first.status == "ok", first.error
    assert first.plan is not None and first.plan.notes
    assert len(bw_server.imports()) == 1
    bw_server.clear_log()
    second = runner(bw_server, tmp_path, USERS, GROUPS, monkeypatch).run("sync")
    assert second.status in ("unchanged", "no-changes")
    full = runner(bw_server, tmp_path, USERS, GROUPS, monkeypatch).run("sync", full=True)
    assert full.status == "no-changes"          # compared with the server: nothing to do
    writes = [r for r in bw_server.requests
              if r.method != "GET" and not r.path.endswith("/connect/token")]
    assert writes == []


def test_disable_in_directory_revokes(bw_server: BitwardenServer, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A user disabled in the file is revoked on the next run (default policy: revoke)."""
    runner(bw_server, tmp_path, USERS, GROUPS, monkeypatch).run("sync")
    changed = [{**USERS[0], "active": False}, *USERS[1:]]
    result = runner(bw_server, tmp_path, changed, GROUPS, monkeypatch).run("sync")
    assert result.status == "ok", result.error
    assert result.plan is not None and [c.kind for c in result.plan.changes] == ["revoke_user"]
    assert bw_server.member("person1@example.com").status_name == "Revoked"  # type: ignore[union-attr]


def test_names_in_directory_converge(bw_server: BitwardenServer, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory with display names converges against Bitwarden (second run: no changes)."""
    named = [{**u, "display_name": f"Person {u['id']}"} for u in USERS]
    runner(bw_server, tmp_path, named, GROUPS, monkeypatch).run("sync")
    second = runner(bw_server, tmp_path, named, GROUPS, monkeypatch).run("plan")
    assert second.plan is not None and second.plan.empty
