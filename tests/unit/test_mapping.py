"""Attribute mapping: paths and expressions parsed at load, evaluated per user, diffed by path."""

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dirconnector import settings as config
from dirconnector.diff import USER_FIELDS, Policy, diff
from dirconnector.errors import ConfigError
from dirconnector.mapping import (
    ENTERPRISE,
    MANAGER,
    parse_group_mapping,
    parse_path,
    parse_user_mapping,
)
from dirconnector.model import Group, Snapshot, User
from dirconnector.plan import Plan
from dirconnector.report import describe
from dirconnector.sync import Runner
from dirconnector.testing import FakeConnector, FakeTarget, apply_to_snapshot

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "directory.json"
DEPT = f"{ENTERPRISE}:department"
FIELDS = (*USER_FIELDS, "attributes")


def person(ext: str, **attrs: str) -> User:
    return User(ext, f"{ext}@x.com", display_name=ext.upper(), attributes=tuple(attrs.items()))


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(("key", "canonical"), [
    ("title", "title"),
    ("name.middleName", "name.middleName"),
    ('phoneNumbers[type eq "work"].value', 'phoneNumbers[type eq "work"].value'),
    ('phoneNumbers[type eq "mobile"]', 'phoneNumbers[type eq "mobile"].value'),
    (f"{ENTERPRISE}:department", DEPT),
    ("urn:ietf:params:scim:schemas:core:2.0:User:title", "title"),
    ('addresses[type eq "work"].locality', 'addresses[type eq "work"].locality'),
    ("urn:example:params:scim:schemas:extension:acme:2.0:User:badge",
     "urn:example:params:scim:schemas:extension:acme:2.0:User:badge"),
])
def test_paths_are_parsed_to_one_canonical_spelling(key, canonical):
    """Core paths lose their URN, a filtered multi-valued path gets .value."""
    assert parse_path(key).text == canonical


@pytest.mark.parametrize(("key", "why"), [
    ("externalId", "directory's id"),
    ("active", "enabled state"),
    ("userName", "email"),
    ("phoneNumbers", "multi-valued"),
    ('emails[type eq "work"].value', "directory's email"),
    ("titel", "not a core User attribute"),
    (f"{ENTERPRISE}:depatment", "not an enterprise User attribute"),
    ("title.value", "simple attribute"),
    ("name.nickname", "not a sub-attribute"),
    ("phone numbers", "not a SCIM attribute path"),
])
def test_bad_paths_are_refused_with_the_reason(key, why):
    """A path the target cannot write is a ValueError that says why."""
    with pytest.raises(ValueError, match=why):
        parse_path(key)


def test_expressions_template_case_default_map_and_first():
    """Every expression form evaluates as documented."""
    m = parse_user_mapping({
        "nickName": "{givenName}.{sn}",
        "title": {"from": "title", "default": "Staff"},
        "userType": {"from": "employeeType", "map": {"E": "Employee"}},
        "preferredLanguage": {"first": ["preferredLanguage", "c"], "case": "lower"},
        "locale": {"template": "{c}-{l}", "case": "upper"},
    })
    assert m.source_attributes == {"givenName", "sn", "title", "employeeType",
                                   "preferredLanguage", "c", "l"}
    u = m.map_user(person("a", givenName="Ann", sn="Lee", employeeType="E", c="DE"), {})
    assert dict(u.attributes) == {"nickName": "Ann.Lee", "title": "Staff", "userType": "Employee",
                                  "preferredLanguage": "de"}  # locale: l is empty -> none
    u = m.map_user(person("b", givenName="Bo", employeeType="C", title="Eng",
                          preferredLanguage="FR", c="fr", l="be"), {})
    assert dict(u.attributes) == {"title": "Eng", "userType": "C", "preferredLanguage": "fr",
                                  "locale": "FR-BE"}


def test_source_names_are_matched_case_insensitively():
    """LDAP attribute names are case-insensitive; so is the mapping's lookup."""
    m = parse_user_mapping({"title": "Title"})
    assert m.map_user(person("a", title="Eng"), {}).attributes == (("title", "Eng"),)


def test_core_paths_override_the_user_fields():
    """displayName and the name parts replace the connector's own values when non-empty."""
    m = parse_user_mapping({"displayName": "{sn}, {givenName}", "name.givenName": "nick"})
    u = m.map_user(person("a", givenName="Ann", sn="Lee"), {})
    assert (u.display_name, u.given_name, u.attributes) == ("Lee, Ann", "", ())
    assert m.map_user(person("b", nick="Bee"), {}).given_name == "Bee"


def test_manager_is_kept_only_when_the_manager_is_synced():
    """A manager outside the synced set, or oneself, is not sent (the next plan stays empty)."""
    m = parse_user_mapping({MANAGER: "manager"})
    everyone = {"a": person("a"), "b": person("b")}
    assert m.map_user(person("a", manager="b"), everyone).attributes == ((MANAGER, "b"),)
    assert m.map_user(person("a", manager="zz"), everyone).attributes == ()
    assert m.map_user(person("a", manager="a"), everyone).attributes == ()


@pytest.mark.parametrize(("table", "message"), [
    ({"title": {"from": "title", "frm": "x"}}, "title: unknown key 'frm'"),
    ({"title": {"from": "a", "first": ["b"]}}, "title: from and first both set"),
    ({"title": "{givenName"}, "title: template"),
    ({"title": {"case": "title"}}, "title: needs from"),
    ({"title": {"from": "t", "case": "camel"}}, "title: case: must be lower or upper"),
    ({MANAGER: "managerDN"}, "manager: the manager comes from"),
    ({"title": "t", "urn:ietf:params:scim:schemas:core:2.0:User:title": "u"}, "mapped twice"),
    ({"title": 3}, "title: must be a source attribute"),
])
def test_bad_expressions_name_the_key(table, message):
    """Every mistake in an expression is one message starting with its key."""
    with pytest.raises(ValueError, match=message):
        parse_user_mapping(table)


def load(tmp_path, target_extra: dict, source_extra: dict | None = None):
    data = {"source": {"type": "file", "users": str(EXAMPLES), **(source_extra or {})},
            "target": {"type": "scim", "url": "http://127.0.0.1:9", "token": "t0ken",
                       **target_extra},
            "state": {"path": str(tmp_path / "s.db")}}
    return config.load(data=data)


def test_config_error_is_one_line_naming_target_mapping_and_the_key(tmp_path):
    """A bad mapping fails at load with one line naming target.mapping and the key."""
    with pytest.raises(ConfigError) as err:
        load(tmp_path, {"mapping": {"titel": "title"}})
    text = str(err.value)
    assert text.startswith("target.mapping: titel: not a core User attribute") and "\n" not in text


def test_bitwarden_refuses_any_user_mapping_with_the_reason(tmp_path):
    """Bitwarden (SCIM flavor and Public API) cannot store mapped attributes, and says why."""
    with pytest.raises(ConfigError, match=r"target\.mapping: Bitwarden cannot store"):
        load(tmp_path, {"flavor": "bitwarden", "mapping": {"title": "title"}})
    data = {"source": {"type": "file", "users": str(EXAMPLES)},
            "target": {"type": "bitwarden", "client_id": "organization." + "0" * 8 + "-0000-0000"
                       "-0000-" + "0" * 12, "client_secret": "x", "mapping": {"title": "t"}}}
    with pytest.raises(ConfigError, match="Bitwarden cannot store mapped attributes"):
        config.load(data=data)


def test_group_mapping_renames_and_rekeys_with_nesting_kept():
    """displayName and externalId of groups come from {name} and {id}; nesting follows."""
    gm = parse_group_mapping({"displayName": "dir-{name}", "externalId": {"template": "ad:{id}",
                                                                          "case": "lower"}})
    snap = Snapshot.build([User("u1", "a@x.com")], [
        Group("G1", "Eng", frozenset({"u1"}), frozenset({"G2"})), Group("G2", "Ops")])
    out = gm.apply(snap)
    assert list(out.groups) == ["ad:g1", "ad:g2"]
    assert out.groups["ad:g1"].name == "dir-Eng"
    assert out.groups["ad:g1"].subgroup_ids == {"ad:g2"}
    with pytest.raises(ValueError, match="a group has only"):
        parse_group_mapping({"displayName": "{cn}"})


# ------------------------------------------------------------------ today's behaviour


def test_an_unmapped_profile_hashes_and_plans_byte_for_byte_as_before():
    """Without a mapping, digests and the plan file are those of the release before mapping."""
    # The figures were computed by the same code at 804e4c7 (before User.attributes).
    users = [User(f"e{i}", f"u{i}@x.com", f"u{i}", f"User {i}", "Giv", f"Fam{i}", i % 7 != 0)
             for i in range(50)]
    groups = [Group("g1", "Eng", frozenset({"e1", "e2"}), frozenset({"g2"})),
              Group("g2", "Ops", frozenset({"e3"}))]
    desired = Snapshot.build(users, groups)
    current = Snapshot({f"r{i}": User(f"e{i}", f"u{i}@x.com", f"u{i}",
                                      f"Old {i}" if i % 3 else f"User {i}", "Giv", f"Fam{i}",
                                      True, f"r{i}") for i in range(10, 60)},
                       {"rg1": Group("g1", "Engineering", frozenset({"r11"}), ref="rg1")})
    plan = diff(desired, current, Policy(remove_missing=True, remove_disabled=True))
    assert desired.digest() == "096aef9f5413bb9451c60674714d35b8440c8780242f00e794b8e7dddb34c8f7"
    assert current.digest() == "2a3cf0c90d433beb1b97aca3365f20c57e7aa3d7f49026485b49d10fd681d77d"
    assert hashlib.sha256(plan.dumps().encode()).hexdigest() == \
        "66fe0e3f582a449ef444f9062dc279d500d2a9c6f4c5c1d07137988dbb16cfe5"


def test_mapped_attributes_change_the_digest():
    """One changed mapped value changes the no-change hash."""
    a = Snapshot.build([person("a", title="Eng")])
    b = Snapshot.build([person("a", title="Staff")])
    assert a.digest() != b.digest() != Snapshot.build([person("a")]).digest()


# ------------------------------------------------------------------ diff and plan


def test_one_changed_attribute_is_one_update_naming_the_path():
    """A changed title is an UpdateUser with exactly that path and its old value."""
    want = Snapshot.build([person("a", title="Staff Engineer", **{DEPT: "R&D"})])
    have = Snapshot({"r1": User("a", "a@x.com", display_name="A", ref="r1",
                                attributes=((DEPT, "R&D"), ("title", "Engineer")))}, {})
    (change,) = diff(want, have, fields=FIELDS).changes
    assert (change.fields, change.before) == (("title",), ("Engineer",))
    assert describe(change).endswith("title: 'Engineer' → 'Staff Engineer'")


def test_a_cleared_attribute_is_planned_as_cleared():
    """A value the directory cleared is an update to nothing (the target removes it)."""
    want = Snapshot.build([person("a")])
    have = Snapshot({"r1": User("a", "a@x.com", display_name="A", ref="r1",
                                attributes=((DEPT, "R&D"),))}, {})
    (change,) = diff(want, have, fields=FIELDS).changes
    assert (change.fields, change.before) == ((DEPT,), ("R&D",))
    assert describe(change).endswith("department: 'R&D' → ''")


def test_a_manager_without_an_account_is_no_change_until_they_have_one():
    """A manager who is disabled and has no account cannot be pointed at: no update (the
    next plan stays empty); once they hold an account, the reference is planned."""
    boss = User("b", "b@x.com", display_name="B", active=False)
    want = Snapshot.build([person("a", **{MANAGER: "b"}), boss])
    held = User("a", "a@x.com", display_name="A", ref="r1")
    assert diff(want, Snapshot({"r1": held}, {}), fields=FIELDS).changes == ()
    boss_account = User("b", "b@x.com", display_name="B", active=False, ref="r2")
    (change,) = diff(want, Snapshot({"r1": held, "r2": boss_account}, {}),
                     fields=FIELDS).changes
    assert (change.fields, change.before) == ((MANAGER,), ("",))


def test_a_target_without_attributes_never_compares_them():
    """The default fields ignore mapped attributes (Bitwarden, older targets)."""
    want = Snapshot.build([person("a", title="Eng")])
    have = Snapshot({"r1": User("a", "a@x.com", display_name="A", ref="r1")}, {})
    assert diff(want, have).empty


def test_saved_plan_round_trips_mapped_attributes():
    """A plan file keeps each user's attributes; reading it back gives the same plan."""
    want = Snapshot.build([person("a", title="Eng"), person("b")])
    plan = diff(want, Snapshot({}, {}), fields=FIELDS)
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert again.changes[0].user.attributes == (("title", "Eng"),)


values = st.one_of(st.just(""), st.sampled_from(["Eng", "Ops", "Sales", "R&D", "b", "c"]))


@settings(max_examples=60, deadline=None)
@given(edits=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),
                                st.sampled_from(["title", DEPT, MANAGER, "nickName"]), values),
                      max_size=12))
def test_property_random_attribute_edits_then_the_next_plan_is_empty(edits):
    """Any attribute edits, planned and applied, leave nothing to do."""
    base = {u: {"title": "Eng"} for u in ("a", "b", "c")}
    current = Snapshot.build([])
    for ext, path, value in edits:
        base[ext][path] = value
        want = Snapshot.build([User(ext, f"{ext}@x.com", attributes=tuple(
            sorted((p, v) for p, v in attrs.items() if v))) for ext, attrs in base.items()])
        plan = diff(want, current, Policy(), fields=FIELDS)
        current = apply_to_snapshot(plan, current)
        assert diff(want, current, Policy(), fields=FIELDS).empty


# ------------------------------------------------------------------ the runner


def test_runner_asks_the_connector_for_the_names_and_syncs_mapped_values(tmp_path, state):
    """The runner passes the source names, maps the read, and the second run has nothing to do."""
    prof = load(tmp_path, {"mapping": {"title": "title", MANAGER: "manager",
                                       "nickName": "{givenName}"}})
    users = [person("a", title="CEO", givenName="Ann", extra="x"),
             person("b", title="Eng", manager="a")]
    conn = FakeConnector(users=users)
    target = FakeTarget(fields=FIELDS)
    runner = Runner(prof, state.open(), connector=conn, target=target)
    assert conn.attributes == {"title", "manager", "givenName"}
    assert runner.run("sync").status == "ok"
    held = {u.external_id: dict(u.attributes) for u in target.state.users.values()}
    assert held == {"a": {"title": "CEO", "nickName": "Ann"}, "b": {"title": "Eng", MANAGER: "a"}}
    assert runner.run("sync", full=True).status == "no-changes"


def test_runner_refuses_a_mapping_the_source_cannot_read(tmp_path, state):
    """A connector without ReadsAttributes and a mapping is a config error before any read."""

    class Plain:
        settings_model = FakeConnector.settings_model

        def check(self): ...

        def fetch(self, state): raise AssertionError("read")

    prof = load(tmp_path, {"mapping": {"title": "title"}})
    with pytest.raises(ConfigError, match=r"target\.mapping: the file source cannot read"):
        Runner(prof, state.open(), connector=Plain(), target=FakeTarget())


def test_creates_are_ordered_managers_first_and_cycles_end():
    """A manager created in the same phase goes before their reports; a cycle still ends."""
    from dirconnector.plan import CreateUser
    from dirconnector.targets.scim.target import _managers_first

    def create(ext: str, boss: str = "") -> CreateUser:
        return CreateUser(User(ext, f"{ext}@x.com",
                               attributes=((MANAGER, boss),) if boss else ()))

    changes = [create("c", "b"), create("b", "a"), create("x", "y"), create("y", "x"),
               create("a"), create("d", "outside")]
    order = [c.user.external_id for c in _managers_first(changes)]
    assert order.index("a") < order.index("b") < order.index("c")
    assert sorted(order) == ["a", "b", "c", "d", "x", "y"]
