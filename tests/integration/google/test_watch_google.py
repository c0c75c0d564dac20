"""Google Workspace through `watch`: each change reaches scim2-server through the feed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dirconnector import settings as config
from dirconnector.connectors.google.api import REPORTS_SCOPE, SCOPES
from tests.integration.feedwatch import WATCH_SYNC, Watching, until
from tests.integration.scim.conftest import TOKEN as SCIM_TOKEN
from tests.integration.scim.conftest import ScimServer

pytestmark = pytest.mark.integration


def test_each_change_reaches_scim_through_watch(env: Any, scim_server: ScimServer,
                                                tmp_path: Path) -> None:
    """Create, suspend, unsuspend, rename, membership add/remove, a nested change, delete."""
    env.directory.oauth.delegate(env.account.client_id, [*SCOPES, REPORTS_SCOPE])
    d, u, g = env.directory, env.org.users, env.org.groups
    profile = config.load(data={
        "profile": "google-watch",
        "source": {"type": "google", "credentials_file": str(env.key_file),
                   "admin_email": "admin@example.com", "api_endpoint": env.emulator.base_url,
                   "ca_file": str(env.emulator.ca_file), "feed_poll_interval": "0.5s"},
        "target": {"type": "scim", "url": scim_server.url, "token": SCIM_TOKEN},
        "sync": WATCH_SYNC,
        "state": {"path": str(tmp_path / "state.db")},
    })

    def user(uid: str) -> dict[str, Any] | None:
        found = [x for x in scim_server.all("Users") if x.get("externalId") == uid]
        return found[0] if found else None

    def members(name: str) -> set[str]:
        names = {str(x["id"]): str(x["externalId"]) for x in scim_server.all("Users")}
        group = next(x for x in scim_server.all("Groups") if x["displayName"] == name)
        return {names[str(m["value"])] for m in group.get("members") or []}  # type: ignore[union-attr, index]

    with Watching(profile) as w:
        assert w.watcher.stream_mode().mode == "feed"
        new = d.add_user("nina", "Nina", "New")
        until(lambda: user(new) is not None and new in members("Everyone"), 10)
        d.set_suspended(u["alice"], True)
        until(lambda: user(u["alice"])["active"] is False, 10)  # type: ignore[index]
        d.set_suspended(u["alice"], False)
        until(lambda: user(u["alice"])["active"] is True, 10)  # type: ignore[index]
        d.rename_user(u["bob"], "robert")
        until(lambda: user(u["bob"])["userName"] == "robert@example.com", 10)  # type: ignore[index]
        d.add_member(g["sales"], new)
        d.remove_member(g["sales"], u["carol"])
        until(lambda: new in members("Sales") and u["carol"] not in members("Sales"), 10)
        d.add_member(g["platform"], u["carol"])         # nested in Engineering
        until(lambda: u["carol"] in members("Platform"), 10)
        d.delete_user(u["carol"])
        until(lambda: u["carol"] not in members("Platform"), 10)
        assert w.watcher.full_syncs == 1
