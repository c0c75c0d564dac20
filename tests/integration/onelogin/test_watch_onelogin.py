"""OneLogin through `watch`: each change reaches scim2-server through the feed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dirconnector import settings as config
from tests.emulators.onelogin import Account, OneLoginEmulator
from tests.emulators.onelogin.seed import CLIENT_ID, CLIENT_SECRET, Seed
from tests.integration.feedwatch import WATCH_SYNC, Watching, until
from tests.integration.scim.conftest import TOKEN as SCIM_TOKEN
from tests.integration.scim.conftest import ScimServer

pytestmark = pytest.mark.integration


def test_each_change_reaches_scim_through_watch(account: Account, ids: Seed,
                                                emulator: OneLoginEmulator,
                                                scim_server: ScimServer, tmp_path: Path,
                                                tls: tuple[object, Path]) -> None:
    """Create, suspend, reactivate, email change, role add/remove, delete, role delete."""
    profile = config.load(data={
        "profile": "onelogin-watch",
        "source": {"type": "onelogin", "base_url": emulator.url, "client_id": CLIENT_ID,
                   "client_secret": CLIENT_SECRET, "ca_file": str(tls[1]),
                   "feed_poll_interval": "0.5s"},
        "target": {"type": "scim", "url": scim_server.url, "token": SCIM_TOKEN},
        "sync": WATCH_SYNC,
        "state": {"path": str(tmp_path / "state.db")},
    })
    u, r = ids.users, ids.roles

    def user(uid: int) -> dict[str, Any] | None:
        found = [x for x in scim_server.all("Users") if x.get("externalId") == str(uid)]
        return found[0] if found else None

    def members(name: str) -> set[str]:
        names = {str(x["id"]): str(x["externalId"]) for x in scim_server.all("Users")}
        group = next(x for x in scim_server.all("Groups") if x["displayName"] == name)
        return {names[str(m["value"])] for m in group.get("members") or []}  # type: ignore[union-attr, index]

    with Watching(profile) as w:
        assert w.watcher.stream_mode().mode == "feed"
        new = account.add_user("nina@example.com", username="nina", firstname="Nina")
        until(lambda: user(new) is not None, 10)
        account.update_user(u["u05"], status=2)
        until(lambda: user(u["u05"])["active"] is False, 10)  # type: ignore[index]
        account.update_user(u["u05"], status=1)
        until(lambda: user(u["u05"])["active"] is True, 10)  # type: ignore[index]
        account.update_user(u["u06"], email="u06.new@example.com")
        until(lambda: user(u["u06"])["userName"] == "u06.new@example.com", 10)  # type: ignore[index]
        account.assign(r["Sales"], new)
        account.unassign(r["Engineering"], u["u01"])
        until(lambda: str(new) in members("Sales")
              and str(u["u01"]) not in members("Engineering"), 10)
        account.delete_user(u["u02"])
        until(lambda: str(u["u02"]) not in members("Engineering"), 10)
        account.delete_role(r["Empty"])
        until(lambda: "Empty" not in {x["displayName"] for x in scim_server.all("Groups")}, 10)
        assert w.watcher.full_syncs == 1
