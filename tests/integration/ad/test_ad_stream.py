"""The Active Directory change stream (connectors/ldap/dirsync.py) against a real Samba DC.

Both modes run every change test: ``dirsync`` as an account granted "Replicating
Directory Changes" (samba-tool dsacl, as an admin would grant it), ``usn`` as the
plain read account, which the DC refuses DirSync. Each test writes its own objects
(named ``st-...``) with an admin connection, so tests do not depend on each other.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dirconnector.connectors import Changes, StreamGap
from dirconnector.model import Snapshot
from dirconnector.state_space import ConnectorState
from tests.integration.ad.conftest import AdServer

pytestmark = pytest.mark.integration

ldap3 = pytest.importorskip("ldap3")

SERVERS = Path(__file__).resolve().parents[3] / "scripts" / "servers"
STREAMER = "svc-st-dirsync"
STREAMER_PASSWORD = "Str3am!Sync-2026"
NORMAL, DISABLED = 0x200 | 0x20, 0x200 | 0x20 | 0x2  # NORMAL_ACCOUNT | PASSWD_NOTREQD (| DISABLE)
_names = itertools.count()


class Admin:
    """Writes to the DC as Administrator, the way an operator's tool would."""

    def __init__(self, ad: AdServer) -> None:
        self.ad = ad
        server = ldap3.Server("127.0.0.1", port=int(ad.url.rsplit(":", 1)[1]), get_info=ldap3.NONE)
        self.conn = ldap3.Connection(
            server, ad.admin_dn, ad.admin_password, auto_bind=True, raise_exceptions=True
        )
        self.people = f"OU=People,{ad.ou}"
        self.groups = f"OU=Groups,{ad.ou}"

    def user(self, mail: str | None = "x", *, disabled: bool = False) -> str:
        """A new user under OU=People; returns its DN."""
        name = f"st-u{next(_names)}-{id(self) % 1000}"
        attrs: dict[str, Any] = {
            "sAMAccountName": name,
            "givenName": "Stream",
            "sn": name,
            "userAccountControl": str(DISABLED if disabled else NORMAL),
        }
        if mail:
            attrs["mail"] = f"{name}@dirconn.test"
        dn = f"CN={name},{self.people}"
        self.conn.add(dn, ["top", "person", "organizationalPerson", "user"], attrs)
        return dn

    def group(self, *members: str) -> str:
        name = f"st-g{next(_names)}-{id(self) % 1000}"
        dn = f"CN={name},{self.groups}"
        self.conn.add(dn, ["top", "group"], {"sAMAccountName": name, "groupType": str(-2147483646)})
        if members:
            self.add_members(dn, *members)
        return dn

    def modify(self, dn: str, **values: str) -> None:
        self.conn.modify(dn, {k: [(ldap3.MODIFY_REPLACE, [v])] for k, v in values.items()})

    def add_members(self, group: str, *dns: str) -> None:
        self.conn.modify(group, {"member": [(ldap3.MODIFY_ADD, list(dns))]})

    def remove_members(self, group: str, *dns: str) -> None:
        self.conn.modify(group, {"member": [(ldap3.MODIFY_DELETE, list(dns))]})

    def rename(self, dn: str, new_rdn: str, superior: str | None = None) -> str:
        self.conn.modify_dn(dn, new_rdn, new_superior=superior)
        return f"{new_rdn},{superior or dn.split(',', 1)[1]}"

    def delete(self, dn: str) -> None:
        self.conn.delete(dn)

    def guid(self, dn: str) -> str:
        import uuid

        self.conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["objectGUID"])
        return str(uuid.UUID(bytes_le=self.conn.response[0]["raw_attributes"]["objectGUID"][0]))


@pytest.fixture(scope="module")
def admin(ad_server: AdServer) -> Iterator[Admin]:
    a = Admin(ad_server)
    yield a
    a.conn.unbind()


@pytest.fixture(scope="module")
def streamer(ad_server: AdServer, admin: Admin) -> str:
    """An account granted "Replicating Directory Changes" on the domain (connectors/ldap.md)."""
    dn = f"CN={STREAMER},OU=Service Accounts,{ad_server.ou}"
    admin.conn.add(
        dn, ["top", "person", "organizationalPerson", "user"], {"sAMAccountName": STREAMER}
    )
    ad_server.samba_tool("user", "setpassword", STREAMER, f"--newpassword={STREAMER_PASSWORD}")
    ad_server.samba_tool("user", "enable", STREAMER)
    ad_server.samba_tool(
        "dsacl",
        "set",
        "--car=get-changes",
        "--action=allow",
        f"--objectdn={ad_server.base_dn}",
        f"--trusteedn={dn}",
    )
    grant_deleted_objects_read(ad_server, dn)
    return dn


def grant_deleted_objects_read(ad: AdServer, dn: str) -> None:
    """List Contents + Read Property on CN=Deleted Objects (KB 892806), as addata.py grants
    the reader: Samba's DirSync returns tombstones only to accounts that may read them."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[3]); from addata import "
        "_grant_deleted_objects_read as grant; from samba.param import LoadParm; "
        "from samba.samdb import SamDB; from samba.auth import system_session; "
        "lp = LoadParm(); lp.load(sys.argv[1]); "
        "grant(SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp), sys.argv[2])"
    )
    tool = Path(shutil.which("samba-tool") or "samba-tool")
    python = tool.read_text(errors="replace").splitlines()[0].removeprefix("#!").strip()
    subprocess.run(
        [*python.split(), "-c", code, ad.smb_conf, dn, str(SERVERS)],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(params=["dirsync", "usn"])
def stream_settings(
    request: pytest.FixtureRequest, ad_settings: Callable[..., Any], streamer: str
) -> Callable[..., Any]:
    """Settings for one mode: the granted account (dirsync) or the plain reader (usn)."""

    def make(**overrides: Any) -> Any:
        if request.param == "dirsync":
            overrides = {"bind_dn": streamer, "password": STREAMER_PASSWORD, **overrides}
        return ad_settings(poll_interval="0.2s", **overrides)

    make.mode = request.param  # type: ignore[attr-defined]
    return make


def connector(settings: Any) -> Any:
    from dirconnector.connectors.ldap.connector import LdapConnector

    return LdapConnector(settings)


@pytest.fixture
def stream(stream_settings: Callable[..., Any]) -> Iterator[Any]:
    c = connector(stream_settings())
    assert c.stream_mode().mode == stream_settings.mode  # type: ignore[attr-defined]
    yield c
    c.close()


def drain(c: Any, position: str, wait: float = 3.0) -> Changes:
    """The changes since ``position``, merged over the few polls they may take."""
    batch = c.changes(position, wait)
    return batch


def fetch(settings: Any) -> Snapshot:
    snap: Snapshot = connector(settings).fetch(ConnectorState())
    return snap


def test_mode_is_usn_without_the_right_and_says_why(ad_settings: Callable[..., Any]) -> None:
    """The plain read account is refused DirSync, so the stream polls uSNChanged and says why."""
    c = connector(ad_settings())
    mode = c.stream_mode()
    c.close()
    assert mode.mode == "usn"
    assert "Replicating Directory Changes" in mode.reason
    assert "insufficient" in mode.reason.lower()
    assert "deletions are not visible" not in mode.reason  # the reader may read tombstones


def test_mode_says_when_deletions_are_invisible(
    ad_settings: Callable[..., Any], admin: Admin, ad_server: AdServer
) -> None:
    """An account that may not read CN=Deleted Objects is told deletions wait for a full read."""
    name = f"st-blind-{next(_names)}"
    dn = f"CN={name},OU=Service Accounts,{ad_server.ou}"
    admin.conn.add(dn, ["top", "person", "organizationalPerson", "user"], {"sAMAccountName": name})
    ad_server.samba_tool("user", "setpassword", name, f"--newpassword={STREAMER_PASSWORD}")
    ad_server.samba_tool("user", "enable", name)
    c = connector(ad_settings(bind_dn=dn, password=STREAMER_PASSWORD))
    mode = c.stream_mode()
    c.close()
    assert mode.mode == "usn" and "deletions are not visible" in mode.reason


def test_mode_is_dirsync_with_the_right(ad_settings: Callable[..., Any], streamer: str) -> None:
    """An account granted Replicating Directory Changes streams through DirSync."""
    c = connector(ad_settings(bind_dn=streamer, password=STREAMER_PASSWORD))
    assert c.stream_mode().mode == "dirsync"
    c.close()


def test_check_names_the_stream_mode(ad_settings: Callable[..., Any], streamer: str) -> None:
    """check prints the mode watch will use, and why."""
    plain = {i.name: i for i in connector(ad_settings()).check().items}
    granted = {
        i.name: i
        for i in connector(ad_settings(bind_dn=streamer, password=STREAMER_PASSWORD)).check().items
    }
    assert plain["change stream (watch)"].detail.startswith("usn: polling uSNChanged")
    assert granted["change stream (watch)"].detail.startswith("dirsync: ")


def test_quiet_directory_gives_an_empty_batch(stream: Any) -> None:
    """Nothing written: the call waits, then returns an empty batch at the same position."""
    pos = stream.stream_position()
    batch = stream.changes(pos, 0.5)
    assert batch.empty and batch.position == pos


def test_each_change_kind_as_fetch_maps_it(
    stream: Any, stream_settings: Callable[..., Any], admin: Admin
) -> None:
    """Create, disable, email change, rename, move, membership and nesting edits arrive as
    the records a full read gives for those objects."""
    keep = admin.user()
    renamed = admin.user()
    moved = admin.user()
    sub = admin.group(keep)
    grp = admin.group(renamed)
    pos = stream.stream_position()

    new = admin.user()
    admin.modify(keep, userAccountControl=str(DISABLED))
    address = f"renamed.{next(_names)}@dirconn.test"  # unique: a duplicate is skipped
    admin.modify(renamed, mail=address)
    renamed = admin.rename(renamed, "CN=st-renamed-" + str(next(_names)))
    moved = admin.rename(moved, moved.split(",", 1)[0], f"OU=Service Accounts,{admin.ad.ou}")
    admin.add_members(grp, new, sub)
    admin.remove_members(grp, renamed)
    admin.add_members(grp, moved)

    batch = drain(stream, pos)
    ids = {dn: admin.guid(dn) for dn in (keep, renamed, moved, new, sub, grp)}
    full = fetch(stream_settings())
    for dn in (keep, renamed, moved, new):
        assert batch.users[ids[dn]] == full.users[ids[dn]], dn
    assert batch.users[ids[keep]].active is False
    assert batch.users[ids[renamed]].email == address
    assert batch.groups[ids[grp]] == full.groups[ids[grp]]
    assert batch.groups[ids[grp]].member_ids == {ids[new], ids[moved]}
    assert batch.groups[ids[grp]].subgroup_ids == {ids[sub]}
    assert not batch.removed_users and not batch.removed_groups
    assert all(batch.seen_at[ids[dn]] > 0 for dn in (keep, new))


def test_delete_and_move_out_of_scope_remove(stream: Any, admin: Admin) -> None:
    """A deleted user, a user moved out of the base and a deleted group are removals; the
    group that held the deleted user comes back without it."""
    gone, out, stay = admin.user(), admin.user(), admin.user()
    grp = admin.group(gone, stay)
    doomed = admin.group(stay)
    ids = {dn: admin.guid(dn) for dn in (gone, out, stay, grp, doomed)}
    pos = stream.stream_position()

    admin.delete(gone)
    admin.rename(out, out.split(",", 1)[0], f"CN=Users,{admin.ad.base_dn}")
    admin.delete(doomed)

    batch = drain(stream, pos)
    assert batch.removed_users == {ids[gone], ids[out]}
    assert batch.removed_groups == {ids[doomed]}
    assert batch.groups[ids[grp]].member_ids == {ids[stay]}


def test_deleted_user_with_include_deleted_is_an_inactive_user(
    stream_settings: Callable[..., Any], admin: Admin
) -> None:
    """With include_deleted, a deletion arrives as fetch gives a tombstone: inactive, same email."""
    c = connector(stream_settings(include_deleted=True))
    gone = admin.user()
    ext = admin.guid(gone)
    pos = c.stream_position()
    c.changes(pos, 0)  # the index sees the user alive
    admin.delete(gone)
    batch = c.changes(pos, 3.0)
    c.close()
    user = batch.users[ext]
    assert user.active is False and user.email == gone.split(",")[0][3:] + "@dirconn.test"


def test_cut_resumes_without_losing_or_repeating(
    stream_settings: Callable[..., Any], admin: Admin
) -> None:
    """A stream dropped after a batch resumes from the saved position in a new process:
    the next batch has exactly the changes written since, none of the earlier ones."""
    a, b = admin.user(), admin.user()
    first = connector(stream_settings())
    p0 = first.stream_position()
    admin.modify(a, displayName="First change")
    batch1 = first.changes(p0, 3.0)
    first.close()  # the cut
    admin.modify(b, displayName="Second change")
    admin.modify(a, givenName="Later")

    second = connector(stream_settings())  # a new process, same position
    batch2 = second.changes(batch1.position, 3.0)
    again = second.changes(batch2.position, 0.3)
    second.close()
    ga, gb = admin.guid(a), admin.guid(b)
    assert set(batch1.users) == {ga}
    assert set(batch2.users) == {ga, gb}
    assert batch2.users[ga].given_name == "Later"
    assert batch2.users[gb].display_name == "Second change"
    assert again.empty


def test_position_from_the_future_is_a_gap(stream: Any) -> None:
    """A stored USN above the DC's (a DC restored from backup) raises StreamGap."""
    from dirconnector.connectors.ldap.dirsync import Position

    now = Position.parse(stream.stream_position())
    restored = Position(now.mode, now.dc, now.usn + 100_000, now.cookie).text()
    with pytest.raises(StreamGap, match="restored"):
        stream.changes(restored, 0)


def test_position_from_another_dc_is_a_gap(stream: Any) -> None:
    """USNs are per DC: a position taken on another DC raises StreamGap."""
    from dirconnector.connectors.ldap.dirsync import Position

    now = Position.parse(stream.stream_position())
    other = Position(now.mode, "CN=NTDS Settings,CN=DC2", now.usn, now.cookie).text()
    with pytest.raises(StreamGap, match="DC"):
        stream.changes(other, 0)


def test_garbage_position_is_a_gap(stream: Any) -> None:
    """A position that is not one of ours raises StreamGap, not a crash."""
    with pytest.raises(StreamGap):
        stream.changes("not-a-position", 0)


def test_invalid_dirsync_cookie_is_a_gap(
    ad_settings: Callable[..., Any], streamer: str, admin: Admin
) -> None:
    """A DirSync cookie the DC refuses raises StreamGap."""
    from dirconnector.connectors.ldap.dirsync import Position

    c = connector(ad_settings(bind_dn=streamer, password=STREAMER_PASSWORD))
    now = Position.parse(c.stream_position())
    bad = Position("dirsync", now.dc, now.usn, b"\x01" * 40).text()
    admin.user()
    with pytest.raises(StreamGap, match="cookie"):
        c.changes(bad, 2.0)
    c.close()
