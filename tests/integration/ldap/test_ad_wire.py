"""Active Directory behaviour over a scripted wire (the Samba suite in tests/integration/ad
covers the real server): GUIDs, userAccountControl, ranged member retrieval, tombstones."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from dirconnector.connectors.ldap import connector as ldap_module
from dirconnector.connectors.ldap.connector import KNOWN_EMAILS, LdapConnector, LdapSettings
from dirconnector.connectors.ldap.wire import SHOW_DELETED_OID, Control, Entry
from dirconnector.errors import IncompleteRead
from dirconnector.model import flatten
from dirconnector.state_space import ConnectorState

DOMAIN = "DC=corp,DC=example"
OU = f"OU=Staff,{DOMAIN}"


def guid(n: int) -> bytes:
    return uuid.UUID(int=n).bytes_le


def user(n: int, *, mail: bool = True, uac: int = 512) -> Entry:
    attrs: dict[str, list[bytes]] = {
        "objectguid": [guid(n)], "samaccountname": [f"user{n}".encode()],
        "cn": [f"User {n}".encode()], "useraccountcontrol": [str(uac).encode()]}
    if mail:
        attrs["mail"] = [f"User{n}@Corp.Example".encode()]
    return f"CN=User {n},{OU}", attrs


class ScriptedWire:
    """Answers searches like AD: members cut at ``cap`` values with ;range= options."""

    url = "ldap://dc.test"

    def __init__(self, users: list[Entry], members: int, cap: int = 1500,
                 tombstones: Sequence[Entry] = ()) -> None:
        self.users = users
        self.member_dns = [f"CN=User {n},{OU}".encode() for n in range(members)]
        self.cap = cap
        self.tombstones = list(tombstones)
        self.searches: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = []

    def search(self, base: str, scope: str, filterstr: str, attrs: Sequence[str], *,
               page_size: int, controls: Sequence[Control] = ()) -> Iterator[list[Entry]]:
        self.searches.append((base, filterstr, tuple(attrs), tuple(c.oid for c in controls)))
        if base == "":
            yield [("", {"supportedcapabilities": [b"1.2.840.113556.1.4.800"],
                         "defaultnamingcontext": [DOMAIN.encode()]})]
        elif base.startswith("CN=Deleted Objects"):
            yield self.tombstones
        elif scope == "base" and base.startswith("CN=Big"):
            attr = attrs[0]
            if attr.startswith("member;range="):
                yield [(base, self._range(int(attr.split("=")[1].split("-")[0])))]
            else:
                yield [(base, {})]
        elif "objectClass=group" in filterstr:
            big = {"objectguid": [guid(10_000)], "cn": [b"Big"], **self._range(0)}
            yield [("CN=Big,OU=Groups,DC=corp,DC=example", big)]
        else:
            for i in range(0, len(self.users), page_size or len(self.users)):
                yield self.users[i:i + (page_size or len(self.users))]

    def _range(self, low: int) -> dict[str, list[bytes]]:
        values = self.member_dns[low:low + self.cap]
        high = low + len(values) - 1
        end = "*" if low + self.cap >= len(self.member_dns) else str(high)
        return {f"member;range={low}-{end}": values}

    def close(self) -> None:
        pass


def connector(monkeypatch: pytest.MonkeyPatch, wire: ScriptedWire, **extra: Any) -> LdapConnector:
    monkeypatch.setattr(ldap_module, "connect", lambda settings: wire)
    settings = LdapSettings(type="ldap", url="ldap://dc.test", bind_dn="svc@corp.example",
                            password="x", base_dn=OU, backend="ldap3", **extra)
    return LdapConnector(settings)


def test_ranged_retrieval_reads_every_member(monkeypatch: pytest.MonkeyPatch) -> None:
    """A member list cut at 1,500 values is completed with member;range=N-* reads."""
    wire = ScriptedWire([user(n) for n in range(4000)], members=4000)
    snap = connector(monkeypatch, wire).fetch(ConnectorState())
    big = next(iter(snap.groups.values()))
    assert len(big.member_ids) == 4000
    ranged = [s[2] for s in wire.searches if s[2] and s[2][0].startswith("member;range")]
    assert ranged == [("member;range=1500-*",), ("member;range=3000-*",)]


def test_guid_uac_and_ad_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """objectGUID becomes the GUID string, UAC 0x2 disables, sAMAccountName is the login."""
    wire = ScriptedWire([user(1), user(2, uac=514)], members=2)
    snap = connector(monkeypatch, wire).fetch(ConnectorState())
    one = snap.users[str(uuid.UUID(int=1))]
    assert (one.user_name, one.email, one.active) == ("user1", "user1@corp.example", True)
    assert not snap.users[str(uuid.UUID(int=2))].active
    user_filter = wire.searches[1][1]
    assert user_filter == "(&(objectCategory=person)(objectClass=user))"


def test_deleted_users_are_revoked_with_their_last_known_email(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """include_deleted: a tombstone without mail is an inactive user named by the last read."""
    state = ConnectorState()
    live = ScriptedWire([user(1), user(2)], members=2)
    connector(monkeypatch, live, include_deleted=True).fetch(state)
    state.commit()
    assert state.get(KNOWN_EMAILS)[str(uuid.UUID(int=2))] == "user2@corp.example"
    tomb_dn = f"CN=User 2\\0ADEL:{uuid.UUID(int=2)},CN=Deleted Objects,{DOMAIN}"
    tomb = (tomb_dn, {"objectguid": [guid(2)], "samaccountname": [b"user2"],
                      "isdeleted": [b"TRUE"]})
    stranger = (tomb_dn + "x", {"objectguid": [guid(99)], "isdeleted": [b"TRUE"]})
    after = ScriptedWire([user(1)], members=1, tombstones=[tomb, stranger])
    snap = connector(monkeypatch, after, include_deleted=True).fetch(state)
    gone = snap.users[str(uuid.UUID(int=2))]
    assert (gone.active, gone.email) == (False, "user2@corp.example")
    assert str(uuid.UUID(int=99)) not in snap.users and not snap.skipped
    deleted_search = next(s for s in after.searches if s[0].startswith("CN=Deleted"))
    assert deleted_search[0] == f"CN=Deleted Objects,{DOMAIN}"  # the domain, not base_dn
    assert deleted_search[3] == (SHOW_DELETED_OID,)
    assert snap.info["deleted_users"] == "1"


def test_range_that_returns_nothing_is_incomplete(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ranged read the server answers without the attribute fails the read."""
    wire = ScriptedWire([user(n) for n in range(2000)], members=2000)
    wire._range_orig = wire._range  # type: ignore[attr-defined]
    calls = {"n": 0}

    def cut_once(low: int) -> dict[str, list[bytes]]:
        calls["n"] += 1
        return wire._range_orig(low) if calls["n"] == 1 else {}  # type: ignore[attr-defined, no-any-return]

    monkeypatch.setattr(wire, "_range", cut_once)
    with pytest.raises(IncompleteRead, match="range"):
        connector(monkeypatch, wire).fetch(ConnectorState())


def test_flattened_membership_of_ranged_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """Members read through ranges take part in flattening like any other."""
    wire = ScriptedWire([user(n) for n in range(1600)], members=1600)
    snap = connector(monkeypatch, wire).fetch(ConnectorState())
    assert len(next(iter(flatten(snap.groups).values()))) == 1600
