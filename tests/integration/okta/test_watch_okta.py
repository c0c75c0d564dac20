"""Okta through `watch`: each change reaches scim2-server through the feed, not a full read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dirconnector import settings as config
from tests.emulators.okta import OktaEmulator
from tests.integration.feedwatch import WATCH_SYNC, Watching, until
from tests.integration.scim.conftest import TOKEN as SCIM_TOKEN
from tests.integration.scim.conftest import ScimServer

from .conftest import TOKEN, Org

pytestmark = pytest.mark.integration


def profile(emulator: OktaEmulator, scim: ScimServer, tmp_path: Path) -> config.Profile:
    return config.load(data={
        "profile": "okta-watch",
        "source": {"type": "okta", "org_url": emulator.url, "token": TOKEN,
                   "ca_file": str(emulator.ca_file), "feed_poll_interval": "0.5s"},
        "target": {"type": "scim", "url": scim.url, "token": SCIM_TOKEN},
        "sync": WATCH_SYNC,
        "state": {"path": str(tmp_path / "state.db")},
    })


def test_each_change_reaches_scim_through_watch(org: Org, emulator: OktaEmulator,
                                                scim_server: ScimServer,
                                                tmp_path: Path) -> None:
    """Create, suspend, reactivate, email change, membership add/remove, delete, group
    delete: each on the server within a few polls, with no full read after the first."""
    st, u, g = org.state, org.users, org.groups

    def user(uid: str) -> dict[str, Any] | None:
        found = [x for x in scim_server.all("Users") if x.get("externalId") == uid]
        return found[0] if found else None

    def members(name: str) -> set[str]:
        ids = {str(x["id"]): str(x["externalId"]) for x in scim_server.all("Users")}
        group = next(x for x in scim_server.all("Groups") if x["displayName"] == name)
        return {ids[str(m["value"])] for m in group.get("members") or []}  # type: ignore[union-attr, index]

    def groups() -> set[str]:
        return {str(x["displayName"]) for x in scim_server.all("Groups")}

    with Watching(profile(emulator, scim_server, tmp_path)) as w:
        assert w.watcher.stream_mode().mode == "feed"
        new = st.add_user("nina@example.com", "Nina", "New")
        until(lambda: user(new) is not None, 10)
        st.set_status(u["bob"], "SUSPENDED")
        until(lambda: user(u["bob"])["active"] is False, 10)  # type: ignore[index]
        st.set_status(u["bob"], "ACTIVE")
        until(lambda: user(u["bob"])["active"] is True, 10)  # type: ignore[index]
        st.update_profile(u["alice"], email="alice.new@example.com")
        until(lambda: user(u["alice"])["userName"] == "alice.new@example.com", 10)  # type: ignore[index]
        st.add_member(g["sales"], new)
        st.remove_member(g["eng"], u["bob"])
        until(lambda: new in members("Sales") and u["bob"] not in members("Engineering"), 10)
        st.set_status(u["hank"], "DEPROVISIONED")
        st.delete_user(u["hank"])
        until(lambda: u["hank"] not in members("Engineering"), 10)
        st.delete_group(g["sales"])
        until(lambda: "Sales" not in groups(), 10)
        assert w.watcher.full_syncs == 1 and w.watcher.batches >= 5


def test_a_feed_gap_under_watch_means_a_full_sync(org: Org, emulator: OktaEmulator,
                                                  scim_server: ScimServer,
                                                  tmp_path: Path) -> None:
    """A System Log query Okta refuses is a gap: watch reads in full, then streams on."""
    with Watching(profile(emulator, scim_server, tmp_path)) as w:
        org.state.log_failure = 400
        until(lambda: w.watcher.full_syncs >= 2, 15)
        org.state.log_failure = 0
        new = org.state.add_user("late@example.com", "Late", "Comer")
        until(lambda: any(x.get("externalId") == new for x in scim_server.all("Users")), 15)
