#!/usr/bin/env python3
"""Generate the LDIF of the OpenLDAP test directory (deterministic, sized by --users/--groups).

    scripts/servers/ldapdata.py --users 3000 --groups 50 > data.ldif

What it holds, and which rule makes each case (the tests import these rules):
- ``uid=u000000`` ... people under ou=people (inetOrgPerson); ``is_disabled(i)``
  users carry pwdAccountLockedTime, ``has_mail(i)`` false ones have no mail,
  ``is_non_ascii(i)`` ones have non-ASCII names; each has the ``profile(i)`` attributes
  (title, employeeNumber, telephoneNumber, ..., ``manager``: ``manager_of(i)``);
- special people: ``cn=Smith\\, John`` (escaped comma), ``cn=Łukasz Żółć`` (non-ASCII
  DN), ``cn=Multi Valued+uid=plus`` (multi-valued RDN); jsmith and lzolc manage each other;
- groups: ``cn=R&D\\, Europe`` nested (via a hex-escaped spelling) in ``cn=Research``;
  ``level1`` > ``level2`` > ``level3`` > ``level4``; a diamond; a cycle; a dangling
  member; a groupOfUniqueNames with a ``#'0101'B`` uid suffix; a posixGroup whose
  memberUid values differ in case; ``dept-NNNNN`` bulk groups (user i is in dept
  i % groups);
- ``cn=reader,ou=service``: the read-only service account (size limit set in slapd.conf).
"""

from __future__ import annotations

import argparse
import base64
import sys
from collections.abc import Iterator

BASE = "dc=example,dc=com"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
READER_DN = f"cn=reader,ou=service,{BASE}"
READER_PASSWORD = "reader-secret"
ADMIN_DN = f"cn=admin,{BASE}"
ADMIN_PASSWORD = "admin-secret"
LOCKED = "20240101000000Z"

SPECIAL_USERS = {
    # uid: (DN, mail)
    "jsmith": (f"cn=Smith\\, John,{PEOPLE}", "john.smith@example.com"),
    "lzolc": (f"cn=Łukasz Żółć,{PEOPLE}", "lukasz.zolc@example.com"),
    "plus": (f"cn=Multi Valued+uid=plus,{PEOPLE}", "Plus.User@Example.COM"),
}
NESTED = ("level1", "level2", "level3", "level4")


def uid(i: int) -> str:
    return f"u{i:06d}"


def user_dn(i: int) -> str:
    return f"uid={uid(i)},{PEOPLE}"


def email(i: int) -> str:
    return f"{uid(i)}@example.com"


def is_disabled(i: int) -> bool:
    return i % 10 == 3


def has_mail(i: int) -> bool:
    return i % 25 != 7


def is_non_ascii(i: int) -> bool:
    return i % 50 == 11


def names(i: int) -> tuple[str, str]:
    if is_non_ascii(i):
        return f"Zoë{i}", "Ñúñez-Weiß"
    return f"Given{i}", f"Family{i}"


TITLES = ("Engineer", "Staff Engineer", "Manager", "Analyst", "Designer")
CITIES = ("Berlin", "Paris", "Boston", "Lisbon")
LANGUAGES = ("en", "de", "fr")


def manager_of(i: int) -> int | None:
    """User i reports to user i // 10 (u000000 to nobody): a tree; some managers have no
    mail, so they are outside the synced set."""
    return i // 10 if i else None


def profile(i: int) -> list[tuple[str, str]]:
    """Profile attributes (inetOrgPerson, RFC 2798) an attribute mapping reads."""
    out = [("title", TITLES[i % len(TITLES)]), ("employeeNumber", f"E{i:06d}"),
           ("employeeType", "Contractor" if i % 4 == 0 else "Employee"),
           ("telephoneNumber", f"+1 555 {i:07d}"), ("l", CITIES[i % len(CITIES)]),
           ("preferredLanguage", LANGUAGES[i % len(LANGUAGES)]), ("departmentNumber",
                                                                   f"D{i % 20:02d}")]
    if i % 3 == 0:
        out.append(("mobile", f"+1 666 {i:07d}"))
    boss = manager_of(i)
    if boss is not None:
        out.append(("manager", user_dn(boss)))
    return out


def group_dn(cn: str) -> str:
    return f"cn={cn},{GROUPS}"


def dept(k: int) -> str:
    return f"dept-{k:05d}"


def _line(attr: str, value: str) -> str:
    """One LDIF line; non-ASCII or unsafe values are base64 (RFC 2849 SAFE-STRING)."""
    if value.isascii() and value and value[0] not in " :<" and not value.endswith(" "):
        return f"{attr}: {value}"
    return f"{attr}:: {base64.b64encode(value.encode()).decode()}"


def _entry(dn: str, attrs: list[tuple[str, str]]) -> str:
    return "\n".join([_line("dn", dn), *(_line(a, v) for a, v in attrs)]) + "\n\n"


def _group(cn: str, members: list[str], cls: str = "groupOfNames", dn: str = "") -> str:
    attr = {"groupOfNames": "member", "groupOfUniqueNames": "uniqueMember"}[cls]
    return _entry(dn or group_dn(cn), [("objectClass", cls), ("cn", cn),
                                      *((attr, m) for m in members)])


def generate(users: int, groups: int) -> Iterator[str]:
    if users < 100:
        raise SystemExit("ldapdata: --users must be at least 100 (the special groups use them)")
    yield _entry(BASE, [("objectClass", "dcObject"), ("objectClass", "organization"),
                        ("dc", "example"), ("o", "Example")])
    for ou in ("people", "groups", "service"):
        yield _entry(f"ou={ou},{BASE}", [("objectClass", "organizationalUnit"), ("ou", ou)])
    yield _entry(READER_DN, [("objectClass", "organizationalRole"),
                             ("objectClass", "simpleSecurityObject"), ("cn", "reader"),
                             ("userPassword", READER_PASSWORD)])
    for i in range(users):
        given, family = names(i)
        attrs = [("objectClass", "inetOrgPerson"), ("uid", uid(i)), ("cn", f"{given} {family}"),
                 ("sn", family), ("givenName", given), ("displayName", f"{given} {family}")]
        if has_mail(i):
            attrs.append(("mail", email(i)))
        if is_disabled(i):
            attrs.append(("pwdAccountLockedTime", LOCKED))
        yield _entry(user_dn(i), attrs + profile(i))
    for name, (dn, mail) in SPECIAL_USERS.items():
        cn = dn.split(",", 1)[0] if name != "jsmith" else "cn=Smith, John"
        cn_value = "Multi Valued" if name == "plus" else cn.removeprefix("cn=")
        # jsmith and lzolc manage each other: a manager cycle.
        boss = {"jsmith": "lzolc", "lzolc": "jsmith"}.get(name)
        yield _entry(dn, [("objectClass", "inetOrgPerson"), ("uid", name), ("cn", cn_value),
                          ("sn", cn_value.split()[-1]), ("mail", mail)]
                     + ([("manager", SPECIAL_USERS[boss][0])] if boss else []))
    yield _group("R&D, Europe", [user_dn(1), f"CN=Smith\\2C John,OU=People,{BASE}"],
                 dn=f"cn=R&D\\, Europe,{GROUPS}")
    yield _group("Research", [f"cn=R&D\\2C Europe,{GROUPS}", user_dn(2)])
    for n, cn in enumerate(NESTED):
        members = [user_dn(10 + n)]
        if n + 1 < len(NESTED):
            members.append(group_dn(NESTED[n + 1]))
        yield _group(cn, members)
    yield _group("diamond-top", [group_dn("diamond-left"), group_dn("diamond-right")])
    yield _group("diamond-left", [group_dn("diamond-bottom"), user_dn(21)])
    yield _group("diamond-right", [group_dn("diamond-bottom"), user_dn(22)])
    yield _group("diamond-bottom", [user_dn(20)])
    yield _group("cycle-a", [group_dn("cycle-b"), user_dn(30)])
    yield _group("cycle-b", [group_dn("cycle-a"), user_dn(31)])
    yield _group("dangling", [user_dn(40), f"uid=ghost,{PEOPLE}"])
    yield _group("unique-team", [user_dn(50), f"{user_dn(51)}#'0101'B"], "groupOfUniqueNames")
    yield _entry(group_dn("posix-devs"), [
        ("objectClass", "posixGroup"), ("cn", "posix-devs"), ("gidNumber", "5000"),
        ("memberUid", uid(60)), ("memberUid", uid(61).upper()), ("memberUid", "nobody-here")])
    yield _group("Ünïcødé Group", [SPECIAL_USERS["lzolc"][0], SPECIAL_USERS["plus"][0]])
    for k in range(groups):
        members = [user_dn(i) for i in range(k, users, groups)] or [user_dn(0)]
        yield _group(dept(k), members)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--groups", type=int, default=50)
    args = parser.parse_args(argv)
    out = sys.stdout
    for chunk in generate(args.users, args.groups):
        out.write(chunk)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
