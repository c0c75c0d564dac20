"""`dirconnector watch` from a real Samba AD DC to scim2-server, in both stream modes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dirconnector import cli, settings
from tests.integration.ad.conftest import AdServer
from tests.integration.ad.streams import DISABLED, STREAMER_PASSWORD, Admin
from tests.integration.feedwatch import p95, until
from tests.integration.scim.conftest import TOKEN, ScimServer
from tests.integration.watch.conftest import Running

pytestmark = pytest.mark.integration

LAG_GOAL = 5.0  # issue 20: AD p95 <= 5 s


def source(ad: AdServer, mode: str, streamer_dn: str) -> dict[str, Any]:
    """The [source] table: the granted account for dirsync, the plain reader for usn."""
    bind = (streamer_dn, STREAMER_PASSWORD) if mode == "dirsync" else (ad.bind_dn, ad.password)
    return {
        "type": "ldap",
        "url": ad.url,
        "bind_dn": bind[0],
        "password": bind[1],
        "base_dn": ad.ou,
        "user_filter": "(sAMAccountName=st-w*)",
        "poll_interval": "1s",
        "timeout": 10,
    }


def scim_user(scim: ScimServer, email: str) -> dict[str, Any] | None:
    body = scim.get("/Users", filter=f'userName eq "{email}"')
    found = body.get("Resources") or []
    assert isinstance(found, list)
    return found[0] if found else None




@pytest.mark.parametrize("mode", ["dirsync", "usn"])
def test_check_names_the_stream_mode(
    mode: str, ad_server: AdServer, streamer: str, scim_server: ScimServer, tmp_path: Path
) -> None:
    """`dirconnector check` prints the mode watch will use, and why."""
    config = tmp_path / "config.toml"
    src = source(ad_server, mode, streamer)
    config.write_text(
        "[source]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in src.items())
        + f'[target]\ntype = "scim"\nurl = "{scim_server.url}"\n'
        f'token = "{TOKEN}"\n[state]\npath = "{tmp_path / "state.db"}"\n'
    )
    result = CliRunner().invoke(
        cli.main, ["--config", str(config), "check"], catch_exceptions=False
    )
    out = " ".join(result.output.split())
    assert f"watch mode: follows changes by {mode}" in out, out
    if mode == "usn":
        assert "Replicating Directory Changes" in out


@pytest.mark.parametrize("mode", ["dirsync", "usn"])
def test_disabled_user_reaches_scim_within_goal(
    mode: str,
    ad_server: AdServer,
    streamer: str,
    admin: Admin,
    scim_server: ScimServer,
    tmp_path: Path,
    record_property: Callable[[str, Any], None],
) -> None:
    """A user disabled in AD is inactive on scim2-server through watch; p95 lag <= 5 s."""
    users = []
    for _ in range(10):
        dn = admin.user()
        name = dn.split(",")[0][3:]
        admin.rename(dn, f"CN=st-w{name[4:]}")  # user_filter: sAMAccountName=st-w*
        dn = f"CN=st-w{name[4:]},{admin.people}"
        admin.modify(dn, sAMAccountName=f"st-w{name[4:]}", mail=f"st-w{name[4:]}@dirconn.test")
        users.append((dn, f"st-w{name[4:]}@dirconn.test"))
    profile = settings.load(
        data={
            "source": source(ad_server, mode, streamer),
            "target": {"type": "scim", "url": scim_server.url, "token": TOKEN},
            "sync": {"remove_missing": True, "batch_window": "0.2s"},
            "state": {"path": str(tmp_path / "state.db")},
        }
    )
    lags = []
    with Running(profile) as run:
        until(lambda: run.watcher.full_syncs >= 1 and bool(run.watcher.position), 60)
        for dn, email in users:
            user = scim_user(scim_server, email)
            assert user is not None and user["active"] is True
            admin.modify(dn, userAccountControl=str(DISABLED))
            t0 = time.monotonic()  # the write is acknowledged
            until(lambda e=email: (scim_user(scim_server, e) or {}).get("active") is False, 15)
            lags.append(time.monotonic() - t0)
    assert run.error is None, run.error
    record_property("lags", lags)
    print(
        f"\nAD watch ({mode}): lag p95 {p95(lags):.2f} s, max {max(lags):.2f} s, "
        f"mean {sum(lags) / len(lags):.2f} s over {len(lags)} disables"
    )
    assert p95(lags) <= LAG_GOAL


def watched_user(admin: Admin) -> tuple[str, str]:
    """A new user the profile's user_filter (sAMAccountName=st-w*) takes in: (DN, email)."""
    dn = admin.user()
    name = "st-w" + dn.split(",")[0][3:][4:]
    dn = admin.rename(dn, f"CN={name}")
    admin.modify(dn, sAMAccountName=name, mail=f"{name}@dirconn.test")
    return dn, f"{name}@dirconn.test"


@pytest.mark.parametrize("mode", ["dirsync", "usn"])
def test_each_change_kind_reaches_scim(
    mode: str,
    ad_server: AdServer,
    streamer: str,
    admin: Admin,
    scim_server: ScimServer,
    tmp_path: Path,
) -> None:
    """Create, email change, group add/remove, nesting, move out of scope and delete in
    Samba AD reach scim2-server through watch, each within 5 s."""
    keep, keep_mail = watched_user(admin)
    team = admin.group(keep)
    team_name = team.split(",")[0][3:]
    parent = admin.group()
    parent_name = parent.split(",")[0][3:]
    profile = settings.load(
        data={
            "source": source(ad_server, mode, streamer),
            "target": {"type": "scim", "url": scim_server.url, "token": TOKEN},
            "sync": {"remove_missing": True, "batch_window": "0.2s"},
            "state": {"path": str(tmp_path / "state.db")},
        }
    )

    def group(name: str) -> dict[str, Any]:
        found = scim_server.get("/Groups", filter=f'displayName eq "{name}"')["Resources"]
        assert isinstance(found, list) and found, name
        g: dict[str, Any] = found[0]
        return g

    def members(name: str) -> set[str]:
        return {m["value"] for m in group(name).get("members") or []}

    def sid(email: str) -> str:
        return str((scim_user(scim_server, email) or {}).get("id", ""))

    with Running(profile) as run:
        until(lambda: run.watcher.full_syncs >= 1 and bool(run.watcher.position), 60)
        assert members(team_name) == {sid(keep_mail)}
        new, new_mail = watched_user(admin)  # create
        until(lambda: scim_user(scim_server, new_mail) is not None, 5)
        admin.modify(keep, mail="st-w-moved@dirconn.test")  # email change
        until(lambda: scim_user(scim_server, "st-w-moved@dirconn.test") is not None, 5)
        admin.add_members(team, new)  # group add
        until(lambda: sid(new_mail) in members(team_name), 5)
        admin.remove_members(team, keep)  # group remove
        until(lambda: sid("st-w-moved@dirconn.test") not in members(team_name), 5)
        admin.add_members(parent, team)  # nesting: parent holds new
        until(lambda: sid(new_mail) in members(parent_name), 5)
        admin.rename(keep, keep.split(",")[0], f"CN=Users,{ad_server.base_dn}")  # out of scope
        until(
            lambda: (
                (scim_user(scim_server, "st-w-moved@dirconn.test") or {}).get("active") is False
            ),
            5,
        )
        admin.delete(new)  # delete
        until(lambda: (scim_user(scim_server, new_mail) or {}).get("active") is False, 5)
        until(lambda: sid(new_mail) not in members(team_name), 5)
    assert run.error is None, run.error
