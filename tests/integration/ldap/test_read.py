"""Reading the generated OpenLDAP directory: counts, ids, nesting, escaping, limits."""

from __future__ import annotations

import re

import pytest

from dirconnector.connectors.ldap.connector import LdapConnector
from dirconnector.errors import IncompleteRead, SourceError
from dirconnector.model import Snapshot, flatten
from dirconnector.state_space import ConnectorState
from dirconnector.testing import check_connector

from .conftest import GROUPS, USERS, MakeSettings, ldapdata, ldapsearch_value

pytestmark = pytest.mark.integration
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def by_login(snap: Snapshot) -> dict[str, str]:
    return {u.user_name: u.external_id for u in snap.users.values()}


def members(snap: Snapshot, name: str) -> set[str]:
    """Flattened members of group ``name``, as user names."""
    names = {u.external_id: u.user_name for u in snap.users.values()}
    flat = flatten(snap.groups)
    gid = next(g.external_id for g in snap.groups.values() if g.name == name)
    return {names[m] for m in flat[gid]}


def subgroups(snap: Snapshot, name: str) -> set[str]:
    g = next(g for g in snap.groups.values() if g.name == name)
    return {snap.groups[s].name for s in g.subgroup_ids}


def test_contract(make_settings: MakeSettings) -> None:
    """The connector passes the contract suite every connector runs."""
    check_connector(LdapConnector(make_settings()))


def test_counts_match_the_generated_directory(snapshot: Snapshot) -> None:
    """Every person with a mail is read, through the reader's 1,000-entry limit by paging."""
    with_mail = sum(ldapdata.has_mail(i) for i in range(USERS))
    assert len(snapshot.users) == with_mail + len(ldapdata.SPECIAL_USERS) > 1000
    named = {g.name for g in snapshot.groups.values()}
    assert {ldapdata.dept(k) for k in range(GROUPS)} <= named
    assert len(snapshot.groups) == GROUPS + 16


def test_users_without_mail_are_skipped_and_reported(snapshot: Snapshot) -> None:
    """A person without mail is not synced; the skip names its DN and keeps its id."""
    skipped = {s.ref: s for s in snapshot.skipped if s.reason == "no email"}
    expected = {ldapdata.user_dn(i) for i in range(USERS) if not ldapdata.has_mail(i)}
    assert set(skipped) == expected
    assert all(UUID.match(s.external_id) for s in skipped.values())


def test_disabled_filter_marks_locked_users_inactive(snapshot: Snapshot) -> None:
    """Users matching disabled_filter (pwdAccountLockedTime=*) are inactive, all others active."""
    inactive = {u.user_name for u in snapshot.users.values() if not u.active}
    assert inactive == {ldapdata.uid(i) for i in range(USERS)
                        if ldapdata.is_disabled(i) and ldapdata.has_mail(i)}


def test_without_disabled_filter_everyone_is_active(make_settings: MakeSettings) -> None:
    """No disabled_filter on a non-AD server means no user is read as disabled."""
    snap = LdapConnector(make_settings(disabled_filter=None)).fetch(ConnectorState())
    assert all(u.active for u in snap.users.values())


def test_external_id_is_entry_uuid(slapd: dict[str, str], snapshot: Snapshot) -> None:
    """On OpenLDAP the stable id is entryUUID, not the DN."""
    uuid = ldapsearch_value(slapd, ldapdata.user_dn(5), "entryUUID")
    assert by_login(snapshot)[ldapdata.uid(5)] == uuid.lower()
    assert snapshot.info["entries_without_stable_id"] == "0"


def test_fields_and_non_ascii_names(snapshot: Snapshot) -> None:
    """Names are mapped from givenName/sn/displayName, non-ASCII intact; emails lower-cased."""
    user = snapshot.users[by_login(snapshot)[ldapdata.uid(11)]]
    assert (user.given_name, user.family_name) == ("Zoë11", "Ñúñez-Weiß")
    assert user.display_name == "Zoë11 Ñúñez-Weiß"
    assert user.email == "u000011@example.com"
    plus = snapshot.users[by_login(snapshot)["plus"]]
    assert plus.email == "plus.user@example.com"
    assert snapshot.users[by_login(snapshot)["lzolc"]].display_name == "Łukasz Żółć"


def test_nesting_four_deep(snapshot: Snapshot) -> None:
    """level1 holds the users of level2..level4 after flattening."""
    assert members(snapshot, "level1") == {ldapdata.uid(i) for i in (10, 11, 12, 13)}
    assert subgroups(snapshot, "level3") == {"level4"}


def test_diamond(snapshot: Snapshot) -> None:
    """A group reached by two paths counts once."""
    assert members(snapshot, "diamond-top") == {ldapdata.uid(i) for i in (20, 21, 22)}


def test_cycle(snapshot: Snapshot) -> None:
    """Two groups holding each other both get both members; the read terminates."""
    both = {ldapdata.uid(30), ldapdata.uid(31)}
    assert members(snapshot, "cycle-a") == members(snapshot, "cycle-b") == both


def test_dangling_member_is_ignored(snapshot: Snapshot) -> None:
    """A member DN naming no entry is dropped and counted, not an error."""
    assert members(snapshot, "dangling") == {ldapdata.uid(40)}
    assert int(snapshot.info["unresolved_members"]) >= 2  # ghost DN and nobody-here uid


def test_member_uid_is_case_insensitive(snapshot: Snapshot) -> None:
    """posixGroup memberUid values resolve through uid, whatever their case."""
    assert members(snapshot, "posix-devs") == {ldapdata.uid(60), ldapdata.uid(61)}


def test_unique_member_with_uid_suffix(snapshot: Snapshot) -> None:
    """groupOfUniqueNames values with a #'0101'B suffix still resolve."""
    assert members(snapshot, "unique-team") == {ldapdata.uid(50), ldapdata.uid(51)}


def test_escaped_dns_match_their_other_spellings(snapshot: Snapshot) -> None:
    """cn=R&D\\, Europe is found through cn=R&D\\2C Europe; CN=Smith\\2C John,OU=People too."""
    assert subgroups(snapshot, "Research") == {"R&D, Europe"}
    assert members(snapshot, "R&D, Europe") == {ldapdata.uid(1), "jsmith"}
    assert members(snapshot, "Research") == {ldapdata.uid(1), ldapdata.uid(2), "jsmith"}
    assert members(snapshot, "Ünïcødé Group") == {"lzolc", "plus"}


def test_unpaged_read_over_the_size_limit_raises(make_settings: MakeSettings) -> None:
    """With paging off, the reader's 1,000-entry limit is an IncompleteRead, not a short read."""
    with pytest.raises(IncompleteRead, match="limit"):
        LdapConnector(make_settings(page_size=0)).fetch(ConnectorState())


def test_page_larger_than_the_server_allows_raises(make_settings: MakeSettings) -> None:
    """A page size above the account's limit is refused by slapd and reported as incomplete."""
    with pytest.raises(IncompleteRead):
        LdapConnector(make_settings(page_size=2000)).fetch(ConnectorState())


def test_admin_reads_unpaged(make_settings: MakeSettings, slapd: dict[str, str],
                             snapshot: Snapshot) -> None:
    """page_size = 0 works where the account has no limit, with the same result."""
    settings = make_settings(page_size=0, bind_dn=slapd["SLAPD_ADMIN_DN"],
                             password=slapd["SLAPD_ADMIN_PASSWORD"])
    assert LdapConnector(settings).fetch(ConnectorState()).digest() == snapshot.digest()


def test_email_prefix_and_suffix_fallback(make_settings: MakeSettings) -> None:
    """Users without mail get <uid>@suffix when email_prefix_attribute/email_suffix are set."""
    snap = LdapConnector(make_settings(email_prefix_attribute="uid", email_suffix="example.org")
                         ).fetch(ConnectorState())
    assert not [s for s in snap.skipped if s.reason == "no email"]
    assert snap.users[by_login(snap)[ldapdata.uid(7)]].email == "u000007@example.org"


def test_user_filter_and_relative_base(make_settings: MakeSettings) -> None:
    """user_filter narrows the user search; a relative user_base is put under base_dn."""
    snap = LdapConnector(make_settings(user_filter="(uid=u00001*)", user_base="ou=people",
                                       user_scope="one")).fetch(ConnectorState())
    assert set(by_login(snap)) == {ldapdata.uid(i) for i in range(10, 20)}


def test_group_object_class_picks_member_attribute(make_settings: MakeSettings) -> None:
    """group_object_class = posixGroup alone reads posix groups through memberUid."""
    snap = LdapConnector(make_settings(group_object_class="posixGroup")).fetch(ConnectorState())
    assert [g.name for g in snap.groups.values()] == ["posix-devs"]
    assert members(snap, "posix-devs") == {ldapdata.uid(60), ldapdata.uid(61)}


def test_group_filter_values_are_filters(make_settings: MakeSettings) -> None:
    """group_filter is ANDed with the object classes; a value with '&' needs no escaping."""
    snap = LdapConnector(make_settings(group_filter="(cn=R&D, Europe)")).fetch(ConnectorState())
    assert [g.name for g in snap.groups.values()] == ["R&D, Europe"]


def test_failover_to_the_second_url(make_settings: MakeSettings, slapd: dict[str, str]) -> None:
    """When the first URL does not answer, the next one is used."""
    dead = "ldap://127.0.0.1:1"
    snap = LdapConnector(make_settings(url=[dead, slapd["SLAPD_URL"]], timeout=2)
                         ).fetch(ConnectorState())
    assert snap.info["url"] == slapd["SLAPD_URL"]


def test_no_url_answers(make_settings: MakeSettings) -> None:
    """When no URL answers, one SourceError names them all."""
    with pytest.raises(SourceError, match=r"127\.0\.0\.1:1.*127\.0\.0\.1:2"):
        LdapConnector(make_settings(url=["ldap://127.0.0.1:1", "ldap://127.0.0.1:2"], timeout=2)
                      ).fetch(ConnectorState())


def test_wrong_password(make_settings: MakeSettings) -> None:
    """A rejected bind is a SourceError that names the bind DN and never the password."""
    settings = make_settings(password="not-the-password")
    with pytest.raises(SourceError, match="rejected") as info:
        LdapConnector(settings).fetch(ConnectorState())
    assert "not-the-password" not in str(info.value)
    report = LdapConnector(settings).check()
    assert not report.ok and "rejected" in report.items[0].detail


def test_missing_base_dn(make_settings: MakeSettings) -> None:
    """A base DN that does not exist fails the read and the check names it."""
    settings = make_settings(group_base="ou=nowhere")
    with pytest.raises(SourceError, match="does not exist"):
        LdapConnector(settings).fetch(ConnectorState())
    report = LdapConnector(settings).check()
    assert [i.name for i in report.items if not i.ok] == ["group_base exists"]


def test_check_counts_and_samples(make_settings: MakeSettings) -> None:
    """check() reports the bind, counts, and the first entries lacking an email."""
    report = LdapConnector(make_settings()).check()
    assert report.ok
    assert report.counts["no_email"] == USERS // 25
    assert report.samples[0].startswith(ldapdata.user_dn(7))


def test_base_dn_from_root_dse(make_settings: MakeSettings, snapshot: Snapshot) -> None:
    """Without base_dn the single naming context of the root DSE is used."""
    snap = LdapConnector(make_settings(base_dn=None)).fetch(ConnectorState())
    assert snap.digest() == snapshot.digest()
    assert snap.info["server"] == "openldap"


def test_silent_server_times_out(make_settings: MakeSettings) -> None:
    """A server that accepts the connection but never answers fails within the timeout."""
    import socket
    import time

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"127\.0\.0\.1:\d+: no answer within 1 s"):
            LdapConnector(make_settings(url=url, timeout=1)).fetch(ConnectorState())
        assert time.monotonic() - started < 10
