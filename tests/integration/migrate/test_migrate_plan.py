"""The pure hand-off plan, the [migrate] table, and what apply refuses, without servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirconnector import settings
from dirconnector.errors import ConfigError
from dirconnector.mapping import ENTERPRISE, parse_group_mapping, parse_user_mapping
from dirconnector.migrate import render as render
from dirconnector.migrate.apply import Migration
from dirconnector.migrate.plan import PRESETS, Scope, migrate_plan, migrate_settings
from dirconnector.model import Group, Snapshot, User
from dirconnector.state import SqliteStore
from dirconnector.testing import FakeConnector

BW = {"server": "bitwarden"}


def snap(users: list[User], groups: list[Group] = (), info: dict[str, str] | None = None
         ) -> Snapshot:  # type: ignore[assignment]
    return Snapshot({u.key: u for u in users}, {g.key: g for g in groups}, info=info or {})


def test_unknown_migrate_key_names_its_toml_path():
    """An unknown key in [migrate] is refused with its path and a did-you-mean."""
    with pytest.raises(ConfigError, match=r"migrate\.scope_group: unknown key; did you mean "
                                          r"'scope_groups'"):
        migrate_settings({"scope_group": ["Staff"]})


def test_bad_migrate_value_names_its_toml_path():
    """A value outside the allowed set names migrate.<key>."""
    with pytest.raises(ConfigError, match=r"^migrate\.external_id_from"):
        migrate_settings({"external_id_from": "objectGUID"})


def test_overrides_change_what_the_idp_sends():
    """[migrate] external_id_from and user_lookup override the preset."""
    preset = migrate_settings({"external_id_from": "email", "user_lookup": ["externalId"]}
                              ).preset("entra")
    assert preset.external_id_from == "email" and preset.user_lookup == ("externalId",)
    assert PRESETS["entra"].external_id_from == "user_name_local_part"


def test_unknown_scope_group_is_a_config_error():
    """A --scope-group the directory does not have is refused, not silently empty."""
    desired = Snapshot.build([User("1", "a@x.org")], [Group("g", "Staff", frozenset({"1"}))])
    with pytest.raises(ConfigError, match=r"no directory group named .Staf.$"):
        migrate_plan(desired, snap([]), PRESETS["okta"], Scope(("Staf",)))


def test_scope_takes_direct_members_only():
    """Members of a nested group are not in scope (IdPs do not expand nested assignment)."""
    desired = Snapshot.build(
        [User("1", "a@x.org"), User("2", "b@x.org")],
        [Group("g", "Staff", frozenset({"1"}), frozenset({"h"})),
         Group("h", "Inner", frozenset({"2"}))])
    current = snap([User("1", "a@x.org", ref="r1"), User("2", "b@x.org", ref="r2")], info=BW)
    plan = migrate_plan(desired, current, PRESETS["okta"], Scope(("Staff",)))
    assert {m.email: m.verdict for m in plan.members} == {
        "a@x.org": "adopt_external_id", "b@x.org": "unmanaged"}


def test_external_id_held_by_another_account_is_a_conflict():
    """Setting an externalId another account holds would answer 409: conflict, no change."""
    desired = Snapshot.build([User("1", "a@x.org", "a@x.org")])
    current = snap([User("1", "a@x.org", ref="r1"), User("a", "other@x.org", ref="r2")],
                   info=BW)
    plan = migrate_plan(desired, current, PRESETS["entra"])
    a = next(m for m in plan.members if m.email == "a@x.org")
    assert a.verdict == "conflict" and not a.change and "other@x.org" in a.reason


def test_two_accounts_for_one_person_is_a_conflict():
    """An account linked by directory id and another with the same email: conflict."""
    desired = Snapshot.build([User("1", "a@x.org")])
    current = snap([User("1", "old@x.org", ref="r1"), User("", "a@x.org", ref="r2")])
    plan = migrate_plan(desired, current, PRESETS["okta"])
    assert [m.verdict for m in plan.members] == ["conflict"]


def test_externalid_lookup_adopts_what_username_misses():
    """A custom IdP that also filters on externalId finds the account once apply sets it."""
    desired = Snapshot.build([User("1", "a@x.org", "alogin")])
    current = snap([User("1", "a@x.org", ref="r1")], info=BW)
    preset = migrate_settings({"user_name_from": "user_name", "external_id_from": "user_name"}
                              ).preset("custom")
    m = migrate_plan(desired, current, preset).members[0]
    assert (m.verdict, m.found_by, m.change, m.idp_external_id) == (
        "adopt_external_id", "externalId", True, "alogin")


def test_group_verdicts():
    """Groups: aligned by id, matched by name with a new id, renamed (duplicated), new,
    and server groups outside the scope left unmanaged."""
    desired = Snapshot.build([], [Group("g1", "Staff"), Group("g2", "Sales"),
                                  Group("g3", "Ops"), Group("g4", "New")])
    current = snap([], [Group("g1", "Staff", ref="s1"), Group("", "Sales", ref="s2"),
                        Group("g3", "Operations", ref="s3"), Group("", "Admins", ref="s4")],
                   info=BW)
    plan = migrate_plan(desired, current, PRESETS["entra"])
    got = {g.name: (g.verdict, g.change) for g in plan.groups}
    assert got == {"Staff": ("matched_external_id", False),
                   "Sales": ("matched_display_name", True),
                   "Ops": ("duplicate", False), "New": ("new", False),
                   "Admins": ("unmanaged", False)}


def test_markdown_has_counts_and_checklist():
    """The Markdown report carries the tally and the administrator's checklist."""
    desired = Snapshot.build([User("1", "a@x.org", "a@x.org")], [Group("g", "Staff",
                                                                       frozenset({"1"}))])
    current = snap([User("1", "a@x.org", ref="r1"), User("", "b@x.org", ref="r2")], info=BW)
    plan = migrate_plan(desired, current, PRESETS["entra"], Scope(("Staff",)))
    text = render.plan_markdown(plan, "prod")
    assert "1 adopted by userName" in text and "### Checklist" in text
    assert "Turn off every scheduled sync of profile 'prod'" in text
    assert "Assign these groups to the Microsoft Entra ID app: Staff" in text
    assert "b@x.org" in text.split("### Checklist")[1]


def test_checklist_names_the_profiles_own_schedule():
    """A profile the daemon runs is named in the first checklist item with its schedule."""
    plan = migrate_plan(Snapshot.build([]), snap([], info=BW), PRESETS["okta"])
    first = plan.checklist("prod", "every 15m")[0]
    assert "profile 'prod'" in first and "its [schedule] runs it every 15m" in first
    assert "[schedule]" not in plan.checklist("prod")[0]


class ReadOnlyTarget:
    """A target that reads but cannot write an external id (no WritesExternalId)."""

    def snapshot(self) -> Snapshot:
        raise AssertionError("nothing may be read before the capability is checked")


def test_target_without_external_id_writes_is_refused(tmp_path: Path):
    """apply and rollback on a target without WritesExternalId stop before any read or
    write, naming the capability and the two methods it lacks."""
    directory = tmp_path / "directory.json"
    directory.write_text('{"users": [], "groups": []}')
    profile = settings.load(data={
        "profile": "p", "source": {"type": "file", "users": str(directory)},
        "target": {"type": "scim", "url": "http://127.0.0.1:9/v2"},
        "state": {"path": str(tmp_path / "state.db")}})
    store = SqliteStore(tmp_path / "state.db")
    try:
        migration = Migration(profile, store, connector=FakeConnector(),
                              target=ReadOnlyTarget())
        missing = (r"ReadOnlyTarget target cannot: it does not implement the WritesExternalId "
                   r"capability \(set_user_external_id and set_group_external_id")
        with pytest.raises(ConfigError, match=missing):
            migration.apply("okta", map_path=tmp_path / "map.csv", force=True)
        assert not (tmp_path / "map.csv").exists()
        with pytest.raises(ConfigError, match=missing):
            migration.rollback(tmp_path / "map.csv")
        assert store.get_meta("p", "frozen") is None
    finally:
        store.close()


def test_groups_made_under_a_group_mapping_are_recognised():
    """A profile's group_mapping keyed and named its server groups: the plan finds them by
    the mapped externalId. Same name: the IdP's id is set; a mapped name the IdP does not
    send: a duplicate that says why, never "new" beside an "unmanaged" twin."""
    desired = Snapshot.build([], [Group("g1", "Staff"), Group("g2", "Sales")])
    current = snap([], [Group("ldap-g1", "Staff", ref="s1"),
                        Group("ldap-g2", "dir-Sales", ref="s2")])
    by_id = parse_group_mapping({"externalId": "ldap-{id}"})
    plan = migrate_plan(desired, current, PRESETS["entra"], group_mapping=by_id)
    got = {g.name: (g.verdict, g.ref, g.change, g.idp_external_id) for g in plan.groups}
    assert got == {"Staff": ("matched_display_name", "s1", True, "g1"),
                   "Sales": ("duplicate", "s2", False, "g2")}
    named = parse_group_mapping({"externalId": "ldap-{id}", "displayName": "dir-{name}"})
    plan = migrate_plan(desired, current, PRESETS["entra"], group_mapping=named)
    sales = next(g for g in plan.groups if g.name == "Sales")
    assert sales.verdict == "duplicate" and "'dir-Sales' by [target.group_mapping]" in sales.reason
    assert any("[target.group_mapping] named this profile's groups" in n for n in plan.notes)
    # Read without the mapping (as before): both server groups look like someone else's.
    plain = {g.name: g.verdict for g in migrate_plan(desired, current, PRESETS["entra"]).groups}
    assert plain["Sales"] == "new" and plain["dir-Sales"] == "unmanaged"


def test_a_user_mapping_is_named_in_the_plan_notes():
    """[target.mapping] is not handed over: the plan's notes say which attributes the IdP
    app must map itself."""
    mapping = parse_user_mapping({"title": "title", "displayName": "cn",
                                  f"{ENTERPRISE}:manager": "manager"})
    plan = migrate_plan(Snapshot.build([], []), snap([]), PRESETS["okta"], mapping=mapping)
    assert ("[target.mapping] writes 3 attribute(s) (displayName, manager, title): the "
            "hand-off moves accounts and ids only; give the Okta app the same attribute "
            "mappings, or those values stay as last written") in plan.notes
    assert not any("[target.mapping]" in n
                   for n in migrate_plan(Snapshot.build([], []), snap([]),
                                         PRESETS["okta"]).notes)
