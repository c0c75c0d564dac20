"""Reading mapped attributes from slapd: extra attributes, manager DNs, the subschema check."""

from __future__ import annotations

import pytest

from dirconnector.connectors.ldap.connector import LdapConnector
from dirconnector.errors import ConfigError
from dirconnector.mapping import MANAGER, parse_user_mapping
from dirconnector.model import Snapshot
from dirconnector.state_space import ConnectorState

from .conftest import MakeSettings, ldapdata, ldapmodify

pytestmark = pytest.mark.integration
NAMES = frozenset({"title", "employeeNumber", "telephoneNumber", "manager", "mobile", "l"})


def read(make_settings: MakeSettings, names: frozenset[str] = NAMES) -> Snapshot:
    connector = LdapConnector(make_settings())
    connector.read_attributes(names)
    return connector.fetch(ConnectorState())


def by_uid(snap: Snapshot) -> dict[str, dict[str, str]]:
    return {u.user_name: dict(u.attributes) for u in snap.users.values()}


def test_asked_attributes_are_read_and_nothing_else(make_settings: MakeSettings) -> None:
    """Each user carries exactly the asked attributes it has, under their names, lower-cased."""
    snap = read(make_settings)
    seen = by_uid(snap)
    ids = {u.user_name: u.external_id for u in snap.users.values()}
    i = 33                             # has mail, a mobile (i % 3 == 0) and manager u000003
    assert seen[ldapdata.uid(i)] == {
        "title": ldapdata.TITLES[i % 5], "employeenumber": f"E{i:06d}",
        "telephonenumber": f"+1 555 {i:07d}", "mobile": f"+1 666 {i:07d}",
        "l": ldapdata.CITIES[i % 4], "manager": ids[ldapdata.uid(3)]}
    assert "mobile" not in seen[ldapdata.uid(34)]
    assert "manager" not in seen[ldapdata.uid(0)]     # the top of the tree


def test_a_manager_outside_the_read_is_dropped(make_settings: MakeSettings) -> None:
    """A manager DN that is no user the read kept (no mail) resolves to nothing."""
    snap = read(make_settings)
    boss = next(i for i in range(1, 300) if not ldapdata.has_mail(i))      # u000007
    reports = [ldapdata.uid(i) for i in range(boss * 10, boss * 10 + 10)
               if ldapdata.has_mail(i)]
    skipped = {s.external_id for s in snap.skipped}
    for name in reports:
        ext = by_uid(snap)[name].get("manager")
        assert ext is None or ext in skipped    # the skip keeps its id; mapping drops it
    mapped = parse_user_mapping({MANAGER: "manager"}).apply(snap)
    assert all(MANAGER not in dict(u.attributes) for u in mapped.users.values()
               if u.user_name in reports)


def test_a_manager_cycle_resolves_both_ways(make_settings: MakeSettings) -> None:
    """jsmith and lzolc manage each other; both references resolve (DNs with escapes)."""
    snap = read(make_settings, frozenset({"manager"}))
    ids = {u.user_name: u.external_id for u in snap.users.values()}
    seen = by_uid(snap)
    assert seen["jsmith"] == {"manager": ids["lzolc"]}
    assert seen["lzolc"] == {"manager": ids["jsmith"]}


def test_an_unknown_attribute_is_refused_before_any_user_is_read(
        make_settings: MakeSettings) -> None:
    """The subschema has no 'titel': a ConfigError naming it, from fetch and from check."""
    connector = LdapConnector(make_settings())
    connector.read_attributes(frozenset({"title", "titel"}))
    with pytest.raises(ConfigError, match="schema has no attribute 'titel'"):
        connector.fetch(ConnectorState())
    report = connector.check()
    assert not report.ok and "titel" in str(report.items[-1])


def test_a_malformed_name_is_refused_at_once(make_settings: MakeSettings) -> None:
    """profile.title is no LDAP attribute name: refused when asked for."""
    with pytest.raises(ConfigError, match="not an LDAP attribute name"):
        LdapConnector(make_settings()).read_attributes(frozenset({"profile.title"}))


def test_a_changed_attribute_is_read_on_the_next_fetch(make_settings: MakeSettings,
                                                        slapd: dict[str, str]) -> None:
    """An operator's change of title is what the next read returns."""
    i = 120
    ldapmodify(slapd, f"dn: {ldapdata.user_dn(i)}\nchangetype: modify\nreplace: title\n"
                      "title: Principal Engineer\n")
    try:
        assert by_uid(read(make_settings))[ldapdata.uid(i)]["title"] == "Principal Engineer"
    finally:
        ldapmodify(slapd, f"dn: {ldapdata.user_dn(i)}\nchangetype: modify\nreplace: title\n"
                          f"title: {ldapdata.TITLES[i % 5]}\n")
