"""Mapped attributes against scim2-server: round trips, one PATCH per change, managers, schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dirconnector.diff import Policy, diff
from dirconnector.mapping import ENTERPRISE, MANAGER, parse_user_mapping
from dirconnector.model import Snapshot, User
from dirconnector.outcome import Outcome
from dirconnector.plan import Plan
from dirconnector.targets.scim.target import ScimTarget
from dirconnector.testing import managed_refs

from .conftest import TOKEN, MakeTarget, ScimServer, start_server
from .proxy import FaultProxy

pytestmark = pytest.mark.integration
POLICY = Policy(remove_missing=True)

MAPPING = {
    "title": "title",
    "userType": {"from": "employeeType", "map": {"C": "Contractor"}, "default": "Employee"},
    "preferredLanguage": {"from": "lang", "case": "lower"},
    "nickName": "{givenName}.{sn}",
    "name.middleName": "initials",
    'phoneNumbers[type eq "work"].value': "telephoneNumber",
    'phoneNumbers[type eq "mobile"].value': "mobile",
    'addresses[type eq "work"].locality': "l",
    f"{ENTERPRISE}:employeeNumber": "employeeNumber",
    f"{ENTERPRISE}:department": "department",
    MANAGER: "manager",
}
RULES = parse_user_mapping(MAPPING)


def person(i: int, **extra: str) -> User:
    """A directory user with its source attributes (as a connector hands them over)."""
    raw = {"title": "Engineer", "employeeType": "C" if i % 2 else "E", "lang": "EN",
           "givenName": f"Ann{i}", "sn": "Lee", "initials": "Q", "telephoneNumber": f"+1 555 {i}",
           "l": "Berlin", "employeeNumber": f"E{i:04d}", "department": "R&D",
           **({"mobile": f"+1 666 {i}"} if i % 3 == 0 else {}),
           **({"manager": f"ext-{i // 3}"} if i else {}), **extra}
    return User(f"ext-{i}", f"ann{i}@example.org", display_name=f"Ann {i}",
                attributes=tuple(sorted((k, v) for k, v in raw.items() if v)))


def desired(users: list[User]) -> Snapshot:
    return RULES.apply(Snapshot.build(users))


def plan_for(target: ScimTarget, users: list[User]) -> Plan:
    return diff(desired(users), target.snapshot(), POLICY, managed_refs(target),
                target.user_fields)


def apply(target: ScimTarget, plan: Plan) -> None:
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    assert [o for o in outcomes if o.status != "ok"] == []


@pytest.fixture
def mapped(make_target: MakeTarget, proxy: FaultProxy) -> ScimTarget:
    return make_target(proxy.url, mapping=MAPPING, bulk="off")


def test_every_mapped_attribute_round_trips(mapped: ScimTarget, scim_server: ScimServer) -> None:
    """Each mapped attribute lands where RFC 7643 puts it, reads back equal: next plan empty."""
    users = [person(i) for i in range(7)]
    apply(mapped, plan_for(mapped, users))
    three = scim_server.find_user("ext-3")
    ref_of = {u["externalId"]: u["id"] for u in scim_server.all("Users")}
    assert three["title"] == "Engineer" and three["userType"] == "Contractor"
    assert three["preferredLanguage"] == "en" and three["nickName"] == "Ann3.Lee"
    assert three["name"]["middleName"] == "Q"  # type: ignore[index]
    phones = {p["type"]: p["value"] for p in three["phoneNumbers"]}  # type: ignore[attr-defined]
    assert phones == {"work": "+1 555 3", "mobile": "+1 666 3"}
    assert three["addresses"][0]["locality"] == "Berlin"  # type: ignore[index]
    ent = three[ENTERPRISE]
    assert ent["employeeNumber"] == "E0003" and ent["department"] == "R&D"  # type: ignore[index]
    assert ent["manager"]["value"] == ref_of["ext-1"]  # type: ignore[index]
    assert ENTERPRISE in three["schemas"]  # type: ignore[operator]
    assert plan_for(mapped, users).empty


def test_one_changed_attribute_is_one_patch_with_one_operation(
        mapped: ScimTarget, proxy: FaultProxy) -> None:
    """A new title is one PATCH holding exactly one replace of title."""
    users = [person(i) for i in range(4)]
    apply(mapped, plan_for(mapped, users))
    users[2] = person(2, title="Staff Engineer")
    plan = plan_for(mapped, users)
    (change,) = plan.changes
    assert change.fields == ("title",)
    proxy.reset()
    apply(mapped, plan)
    patches = [json.loads(b) for m, _, b in proxy.requests if m in ("PATCH", "PUT")]
    assert patches == [{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "title",
                                        "value": "Staff Engineer"}]}]
    assert plan_for(mapped, users).empty


def test_new_cleared_and_changed_values_converge(mapped: ScimTarget,
                                                 scim_server: ScimServer) -> None:
    """A mobile added, a department cleared and a manager cleared all converge."""
    users = [person(i) for i in range(4)]
    apply(mapped, plan_for(mapped, users))
    users[1] = person(1, mobile="+1 777 1", department="", manager="")
    plan = plan_for(mapped, users)
    (change,) = plan.changes
    assert set(change.fields) == {'phoneNumbers[type eq "mobile"].value',
                                  f"{ENTERPRISE}:department", MANAGER}
    apply(mapped, plan)
    one = scim_server.find_user("ext-1")
    assert "manager" not in one.get(ENTERPRISE, {})  # type: ignore[operator]
    assert "department" not in one.get(ENTERPRISE, {})  # type: ignore[operator]
    assert plan_for(mapped, users).empty


def test_managers_created_in_the_same_run_are_referenced(mapped: ScimTarget,
                                                         scim_server: ScimServer) -> None:
    """A report created before its manager still gets the manager's id, in the same apply."""
    # ext-9's manager is ext-3, whose manager is ext-1: created in whatever order.
    users = [person(i) for i in (9, 3, 1, 0)]
    apply(mapped, plan_for(mapped, users))
    ref_of = {u["externalId"]: u["id"] for u in scim_server.all("Users")}
    nine = scim_server.find_user("ext-9")
    assert nine[ENTERPRISE]["manager"]["value"] == ref_of["ext-3"]  # type: ignore[index]
    assert plan_for(mapped, users).empty


def test_manager_cycle_and_outside_manager_converge(mapped: ScimTarget) -> None:
    """Two people managing each other, and a manager who is not synced, converge."""
    a = person(1, manager="ext-2")
    b = person(2, manager="ext-1")
    c = person(5, manager="ext-404")       # not in the directory read
    apply(mapped, plan_for(mapped, [a, b, c]))
    assert plan_for(mapped, [a, b, c]).empty


def test_put_when_the_server_has_no_patch(make_target: MakeTarget, proxy: FaultProxy,
                                          tmp_path: Path) -> None:
    """Without PATCH in the ServiceProviderConfig, changes go as GET + PUT and converge."""
    config = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
              "patch": {"supported": False}, "bulk": {"supported": False},
              "filter": {"supported": True, "maxResults": 1000},
              "changePassword": {"supported": False}, "sort": {"supported": False},
              "etag": {"supported": False}, "authenticationSchemes": []}

    def no_patch(method: str, path: str, body: bytes) -> bytes:
        return json.dumps(config).encode() if path.endswith("ServiceProviderConfig") else body

    proxy.filter_response = no_patch
    target = make_target(proxy.url, mapping=MAPPING, bulk="off")
    users = [person(i) for i in range(4)]
    apply(target, plan_for(target, users))
    users[3] = person(3, title="Lead", mobile="", department="Ops")
    proxy.reset()
    apply(target, plan_for(target, users))
    assert proxy.count("PATCH", "Users") == 0 and proxy.count("PUT", "Users") == 1
    assert plan_for(target, users).empty


# ------------------------------------------------------------------ the server's schema


def test_check_accepts_a_mapping_the_server_declares(mapped: ScimTarget) -> None:
    """scim2-server declares the enterprise extension: nothing to refuse."""
    assert mapped.mapping_problems() == []
    report = mapped.check()
    assert report.ok, report.items


def test_check_refuses_an_undeclared_extension(make_target: MakeTarget) -> None:
    """An extension the User resource type does not declare is refused, naming the key."""
    target = make_target(mapping={
        "title": "title",
        "urn:example:params:scim:schemas:extension:acme:2.0:User:badge": "badge"})
    problems = target.mapping_problems()
    assert problems == ["target.mapping: urn:example:params:scim:schemas:extension:acme:2.0:"
                        "User:badge: the server's User resource type has no schema "
                        "urn:example:params:scim:schemas:extension:acme:2.0:User"]
    assert not target.check().ok


@pytest.fixture(scope="module")
def no_enterprise(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScimServer]:
    """A scim2-server whose User resource type carries no enterprise extension."""
    import scim2_server

    types = json.loads((Path(scim2_server.__file__).parent / "resources" /
                        "default-resource-types.json").read_text())
    for t in types:
        t.pop("schemaExtensions", None)
    path = tmp_path_factory.mktemp("scim") / "types.json"
    path.write_text(json.dumps(types))
    server = start_server("--resource-type", str(path))
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def test_a_server_without_the_enterprise_extension_refuses_it(no_enterprise: ScimServer) -> None:
    """Mapped enterprise attributes are refused by name on a server that lacks the extension."""
    from dirconnector.targets.scim.target import ScimSettings

    target = ScimTarget(ScimSettings.model_validate(
        {"type": "scim", "url": no_enterprise.url, "token": TOKEN, "mapping": {
            "title": "title", f"{ENTERPRISE}:department": "department"}}))
    problems = target.mapping_problems()
    assert problems is not None and len(problems) == 1
    assert problems[0].startswith(f"target.mapping: {ENTERPRISE}:department: the server's User "
                                  "resource type has no schema")
    report = target.check()
    assert not report.ok and "department" in str(report.items)


def test_read_only_attribute_is_refused(make_target: MakeTarget, proxy: FaultProxy) -> None:
    """An attribute the server marks mutability readOnly is refused, naming it."""
    def read_only_title(method: str, path: str, body: bytes) -> bytes:
        if not path.endswith("/Schemas"):
            return body
        data = json.loads(body)
        for schema in data["Resources"]:
            for attr in schema["attributes"]:
                if attr["name"] == "title":
                    attr["mutability"] = "readOnly"
        return json.dumps(data).encode()

    proxy.filter_response = read_only_title
    target = make_target(proxy.url, mapping={"title": "title", "nickName": "nick"})
    assert target.mapping_problems() == [
        "target.mapping: title: the server marks it read-only (mutability readOnly)"]


def test_no_mapping_sends_what_it_always_sent(make_target: MakeTarget, proxy: FaultProxy) -> None:
    """Without a mapping the create body is the core resource only, with its old attributes."""
    target = make_target(proxy.url, bulk="off")
    users = [replace(person(1), attributes=())]
    apply(target, plan_for(target, users))
    (post,) = [json.loads(b) for m, _, b in proxy.requests if m == "POST"]
    assert set(post) == {"schemas", "userName", "externalId", "emails", "active", "displayName",
                         "name"}
    assert post["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:User"]


def test_sub_attributes_of_one_typed_entry_clear_and_return(make_target: MakeTarget,
                                                             scim_server: ScimServer) -> None:
    """Two sub-attributes of the work address: clearing one keeps the entry, clearing both
    removes it, setting one again adds it back once; every step converges."""
    target = make_target(mapping={'addresses[type eq "work"].locality': "l",
                                  'addresses[type eq "work"].postalCode': "zip"}, bulk="off")
    rules = parse_user_mapping(target.settings.mapping)

    def user(**raw: str) -> User:
        return User("ext-1", "a@example.org", attributes=tuple(sorted(raw.items())))

    def step(u: User) -> list[dict[str, object]]:
        want = rules.apply(Snapshot.build([u]))
        plan = diff(want, target.snapshot(), POLICY, managed_refs(target), target.user_fields)
        apply(target, plan)
        assert diff(want, target.snapshot(), POLICY, managed_refs(target),
                    target.user_fields).empty
        return scim_server.find_user("ext-1").get("addresses") or []  # type: ignore[return-value]

    assert step(user(l="Berlin", zip="10115")) == [
        {"type": "work", "locality": "Berlin", "postalCode": "10115"}]
    assert [a.get("locality") for a in step(user(zip="10115"))] == [None]
    assert step(user()) == []
    assert step(user(l="Paris")) == [{"type": "work", "locality": "Paris"}]
    assert step(user(l="Paris", zip="75001")) == [
        {"type": "work", "locality": "Paris", "postalCode": "75001"}]
