"""Entry mapping details that a live server rarely shows (pure, no server)."""

from __future__ import annotations

from dirconnector.connectors.ldap.connector import LdapSettings
from dirconnector.connectors.ldap.map import (
    GroupResolver,
    RawGroup,
    ServerInfo,
    UserMapper,
    resolve,
)

SETTINGS = LdapSettings(type="ldap", url="ldap://x", base_dn="dc=x",
                        disabled_filter="(nsAccountLock=TRUE)")
R = resolve(SETTINGS, ServerInfo("openldap", ("dc=x",), None))


def entry(uid: str, dn: str | None = None) -> tuple[str, dict[str, list[bytes]]]:
    return (dn or f"uid={uid},ou=People,dc=x",
            {"entryUUID": [f"id-{uid}".encode()], "uid": [uid.encode()],
             "mail": [f"{uid}@x.com".encode()]})


def test_disabled_dn_spelt_differently_still_matches() -> None:
    """A disabled DN the server spelt another way in the disabled search is still honoured."""
    users = UserMapper(R, frozenset({"UID=b, OU=people,DC=X", "uid=c,ou=People,dc=x"}))
    users.add([entry("a"), entry("b"), entry("c")])
    users.finish()
    assert {u.user_name: u.active for u in users.users} == {"a": True, "b": False, "c": False}


def test_attribute_names_compare_case_insensitively() -> None:
    """Upper- or mixed-case attribute names from the server map like lower-case ones."""
    users = UserMapper(R)
    users.add([("uid=a,dc=x", {"ENTRYUUID": [b"ID-A"], "MAIL": [b"A@X.com"], "UID": [b"a"]}),
               ("uid=b,dc=x", {"entryuuid": [b"id-b"], "Mail": [b"b@x.com"], "uid": [b"b"]})])
    assert [(u.external_id, u.email) for u in users.users] == [("id-a", "a@x.com"),
                                                               ("id-b", "b@x.com")]


def test_entry_without_stable_id_is_keyed_on_its_dn() -> None:
    """Only an entry lacking every id attribute falls back to its normalised DN, counted."""
    users = UserMapper(R)
    users.add([("UID=Z,DC=X", {"mail": [b"z@x.com"], "uid": [b"z"]})])
    assert users.users[0].external_id == "uid=z,dc=x" and users.dn_ids == 1


def test_member_spellings_and_self_membership() -> None:
    """Member DNs in other spellings resolve; a group listing itself gets no self-edge."""
    users = UserMapper(R)
    users.add([entry("a"), entry("r&d", "cn=R&D\\, Eu,ou=People,dc=x")])
    group = RawGroup("cn=g,dc=x", "gid", "g", [
        ("member", b"UID=A,OU=PEOPLE,DC=X"), ("member", b"cn=R&D\\2C Eu,ou=people,dc=x"),
        ("member", b"cn=g,dc=x"), ("member", b"not a dn at all =,,")])
    resolver = GroupResolver(users, [group])
    (out,) = resolver.resolve()
    assert out.member_ids == {"id-a", "id-r&d"} and not out.subgroup_ids
    assert resolver.dangling == 1
