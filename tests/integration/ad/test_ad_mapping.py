"""Samba AD -> scim2-server with an attribute mapping: AD's own attribute names, the
manager as a DN, the enterprise extension, and the subschema check, through the runner."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ldap3
import pytest
from click.testing import CliRunner

from dirconnector import cli
from dirconnector import settings as config
from dirconnector.connectors.ldap.connector import LdapConnector, LdapSettings
from dirconnector.connectors.ldap.wire import PyLdapWire
from dirconnector.errors import ConfigError
from dirconnector.mapping import ENTERPRISE, MANAGER
from dirconnector.report import describe
from dirconnector.state import open_store
from dirconnector.state_space import ConnectorState
from dirconnector.sync import Runner
from tests.integration.ad.conftest import AdServer
from tests.integration.ad.streams import DISABLED, NORMAL, Admin
from tests.integration.scim.conftest import TOKEN, ScimServer
from tests.integration.scim.proxy import FaultProxy

pytestmark = pytest.mark.integration

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MAPPING: dict[str, Any] = {
    "title": "title",
    'phoneNumbers[type eq "work"].value': "telephoneNumber",
    'phoneNumbers[type eq "mobile"].value': "mobile",
    "preferredLanguage": "preferredLanguage",
    'addresses[type eq "work"].locality': "l",
    "nickName": {"template": "{givenName}.{sn}", "case": "lower"},
    f"{ENTERPRISE}:employeeNumber": {"first": ["employeeNumber", "employeeID"]},
    f"{ENTERPRISE}:department": "department",
    f"{ENTERPRISE}:organization": "company",
    f"{ENTERPRISE}:division": "division",
    MANAGER: "manager",
}
# The AD attributes of the people the tests make (manager and mail are set apart).
ANN = {
    "title": "Staff Engineer",
    "department": "Engineering",
    "employeeNumber": "E-1002",
    "telephoneNumber": "+49 30 1002",
    "mobile": "+49 170 1002",
    "preferredLanguage": "de-DE",
    "company": "Dirconn GmbH",
    "division": "Platform",
    "l": "Berlin",
}
BOSS = {
    "title": "CTO",
    "department": "Engineering",
    "employeeNumber": "E-1001",
    "telephoneNumber": "+49 30 1001",
    "company": "Dirconn GmbH",
    "division": "Board",
    "l": "Berlin",
    "preferredLanguage": "en-GB",
}
DAN = {
    "title": "Engineer",
    "department": "Support",
    "employeeID": "ID-77",
    "telephoneNumber": "+49 30 1003",
    "company": "Dirconn GmbH",
    "division": "Platform",
    "l": "Hamburg",
}


@dataclass(frozen=True)
class People:
    """The OU the tests sync, and the DNs of the people in it."""

    ou: str
    boss: str
    ann: str
    dan: str
    out: str
    tag: str

    def mail(self, name: str) -> str:
        return f"map-{name}-{self.tag}@dirconn.test"


@pytest.fixture(scope="module")
def people(ad_server: AdServer, admin: Admin) -> Iterator[People]:
    """An OU of four people with AD's profile attributes: boss manages ann, ann manages
    dan, and out's manager (alice, in OU=People) is not in the synced OU."""
    tag = uuid.uuid4().hex[:6]
    ou = f"OU=map-{tag},{ad_server.ou}"
    admin.conn.add(ou, ["top", "organizationalUnit"])
    made: list[str] = []

    def person(name: str, attrs: dict[str, str], manager: str = "") -> str:
        dn = f"CN=map-{name}-{tag},{ou}"
        values = {
            "sAMAccountName": f"map-{name}-{tag}"[:20],
            "givenName": name.title(),
            "sn": f"Map{tag}",
            "mail": f"map-{name}-{tag}@dirconn.test",
            "userAccountControl": str(NORMAL),
            **attrs,
        }
        if manager:
            values["manager"] = manager
        admin.conn.add(dn, ["top", "person", "organizationalPerson", "user"], values)
        made.append(dn)
        return dn

    boss = person("boss", BOSS)
    ann = person("ann", ANN, boss)
    dan = person("dan", DAN, ann)
    admin.conn.search(
        f"OU=People,{ad_server.ou}", "(sAMAccountName=alice)", attributes=["distinguishedName"]
    )
    alice = admin.conn.response[0]["dn"]
    out = person("out", {"title": "Contractor"}, alice)
    try:
        yield People(ou, boss, ann, dan, out, tag)
    finally:
        for dn in reversed(made):
            admin.conn.delete(dn)
        admin.conn.delete(ou)


def runner(
    tmp_path: Path,
    ad: AdServer,
    ou: str,
    url: str,
    mapping: dict[str, Any] = MAPPING,
    sync: dict[str, Any] | None = None,
) -> Runner:
    data = {
        "source": {
            "type": "ldap",
            "url": ad.url,
            "bind_dn": ad.bind_dn,
            "password": ad.password,
            "base_dn": ou,
            "backend": "python-ldap",
        },
        "target": {"type": "scim", "url": url, "token": TOKEN, "mapping": mapping},
        "sync": {"remove_missing": True, **(sync or {})},
        "state": {"path": str(tmp_path / "state.db")},
    }
    profile = config.load(data=data)
    return Runner(profile, open_store(profile.settings.state))


@pytest.fixture
def wire(scim_server: ScimServer) -> Iterator[FaultProxy]:
    """The SCIM server behind a proxy that records every request (the wire)."""
    recorder = FaultProxy(scim_server.port).start()
    yield recorder
    recorder.stop()


@pytest.fixture
def synced(
    tmp_path: Path,
    ad_server: AdServer,
    people: People,
    wire: FaultProxy,
    scim_server: ScimServer,
) -> Runner:
    """A full mapped sync of the OU to a fresh tenant, through the recording proxy."""
    run = runner(tmp_path, ad_server, people.ou, wire.url + scim_server.path)
    result = run.run("sync")
    assert result.status == "ok", result.error
    return run


def user(scim: ScimServer, email: str) -> dict[str, Any]:
    (found,) = scim.get("Users", filter=f'userName eq "{email}"')["Resources"]  # type: ignore[misc]
    return found  # type: ignore[no-any-return]


def writes(wire: FaultProxy) -> list[tuple[str, Any]]:
    return [
        (m, json.loads(b) if b else None)
        for m, _, b in wire.requests
        if m in ("PATCH", "PUT", "POST", "DELETE")
    ]


def test_every_mapped_ad_attribute_lands_and_the_next_plan_is_empty(
    synced: Runner, people: People, scim_server: ScimServer
) -> None:
    """Each of the eleven mapped AD attributes is on the server as mapped, the manager as
    the manager's SCIM id; a full re-plan is empty."""
    boss, ann, dan = (user(scim_server, people.mail(n)) for n in ("boss", "ann", "dan"))
    assert ann["title"] == "Staff Engineer" and ann["preferredLanguage"] == "de-DE"
    assert ann["nickName"] == f"ann.map{people.tag}"
    assert {p["type"]: p["value"] for p in ann["phoneNumbers"]} == {
        "work": "+49 30 1002",
        "mobile": "+49 170 1002",
    }
    assert [(a["type"], a["locality"]) for a in ann["addresses"]] == [("work", "Berlin")]
    assert ann[ENTERPRISE] == {
        "employeeNumber": "E-1002",
        "department": "Engineering",
        "organization": "Dirconn GmbH",
        "division": "Platform",
        "manager": ann[ENTERPRISE]["manager"],
    }
    assert ann[ENTERPRISE]["manager"]["value"] == boss["id"]
    assert dan[ENTERPRISE]["manager"]["value"] == ann["id"]
    # employeeNumber falls back to employeeID; dan has no mobile, so one phone number.
    assert dan[ENTERPRISE]["employeeNumber"] == "ID-77"
    assert [p["type"] for p in dan["phoneNumbers"]] == ["work"]
    assert "manager" not in boss[ENTERPRISE]
    # out's manager (alice) is outside the synced OU: no reference is sent.
    assert "manager" not in user(scim_server, people.mail("out")).get(ENTERPRISE, {})
    left = synced.run("plan", full=True)
    assert left.status == "no-changes", [describe(c) for c in left.plan.changes]


def test_one_changed_attribute_on_the_dc_is_one_patch_with_one_operation(
    synced: Runner, people: People, admin: Admin, wire: FaultProxy
) -> None:
    """A new department on the DC (over LDAP) is one PATCH holding one replace; then
    nothing."""
    admin.modify(people.ann, department="Research")
    try:
        wire.reset()
        result = synced.run("sync")
        assert result.status == "ok", result.error
        assert writes(wire) == [
            (
                "PATCH",
                {
                    "schemas": [PATCH_OP],
                    "Operations": [
                        {"op": "replace", "path": f"{ENTERPRISE}:department", "value": "Research"}
                    ],
                },
            )
        ]
        left = synced.run("plan", full=True)
        assert left.status == "no-changes", [describe(c) for c in left.plan.changes]
    finally:
        admin.modify(people.ann, department=ANN["department"])


def test_a_manager_cleared_on_the_dc_is_removed_on_the_server(
    synced: Runner,
    people: People,
    admin: Admin,
    wire: FaultProxy,
    scim_server: ScimServer,
) -> None:
    """Clearing dan's manager on the DC is one PATCH removing the manager; then nothing."""
    admin.conn.modify(people.dan, {"manager": [(ldap3.MODIFY_DELETE, [])]})
    try:
        wire.reset()
        result = synced.run("sync")
        assert result.status == "ok", result.error
        assert writes(wire) == [
            ("PATCH", {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": MANAGER}]})
        ]
        assert "manager" not in user(scim_server, people.mail("dan")).get(ENTERPRISE, {})
        left = synced.run("plan", full=True)
        assert left.status == "no-changes", [describe(c) for c in left.plan.changes]
    finally:
        admin.modify(people.dan, manager=people.ann)


def test_a_manager_cycle_on_the_dc_converges(
    synced: Runner,
    people: People,
    admin: Admin,
    wire: FaultProxy,
    scim_server: ScimServer,
) -> None:
    """boss -> ann -> dan, then dan made boss's manager (a cycle of three): one PATCH adds
    boss's manager, every reference points at the right SCIM id, the next plan is empty."""
    admin.modify(people.boss, manager=people.dan)
    try:
        wire.reset()
        result = synced.run("sync")
        assert result.status == "ok", result.error
        boss, ann, dan = (user(scim_server, people.mail(n)) for n in ("boss", "ann", "dan"))
        assert writes(wire) == [
            (
                "PATCH",
                {
                    "schemas": [PATCH_OP],
                    "Operations": [
                        {"op": "replace", "path": MANAGER, "value": {"value": dan["id"]}}
                    ],
                },
            )
        ]
        managers = {
            n: r[ENTERPRISE]["manager"]["value"]
            for n, r in (("boss", boss), ("ann", ann), ("dan", dan))
        }
        assert managers == {"boss": dan["id"], "ann": boss["id"], "dan": ann["id"]}
        left = synced.run("plan", full=True)
        assert left.status == "no-changes", [describe(c) for c in left.plan.changes]
    finally:
        admin.conn.modify(people.boss, {"manager": [(ldap3.MODIFY_DELETE, [])]})


def test_an_attribute_ad_lacks_is_refused_before_any_user_is_read(
    ad_server: AdServer, people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AD's schema has no 'costCentre': fetch raises a ConfigError naming it, having read
    only the root DSE and the subschema entry."""
    bases: list[str] = []
    search = PyLdapWire.search

    def recording(self: PyLdapWire, base: str, *args: Any, **kwargs: Any) -> Any:
        bases.append(base)
        return search(self, base, *args, **kwargs)

    monkeypatch.setattr(PyLdapWire, "search", recording)
    connector = LdapConnector(
        LdapSettings(
            url=ad_server.url,
            bind_dn=ad_server.bind_dn,
            password=ad_server.password,
            base_dn=people.ou,
            backend="python-ldap",
        )
    )
    connector.read_attributes(frozenset({"title", "employeeID", "costCentre"}))
    with pytest.raises(ConfigError, match="schema has no attribute 'costCentre'"):
        connector.fetch(ConnectorState())
    assert bases == ["", f"CN=Aggregate,CN=Schema,CN=Configuration,{ad_server.base_dn}"]


def test_plan_with_an_attribute_ad_lacks_is_a_one_line_error(
    tmp_path: Path, ad_server: AdServer, people: People, scim_server: ScimServer
) -> None:
    """`dirconnector plan` with costCentre mapped exits 1 with one line naming it."""
    toml = tmp_path / "c.toml"
    toml.write_text(f"""
[source]
type = "ldap"
url = "{ad_server.url}"
bind_dn = "{ad_server.bind_dn}"
password_env = "AD_PW"
base_dn = "{people.ou}"
[target]
type = "scim"
url = "{scim_server.url}"
token_env = "SCIM_TOKEN"
[target.mapping]
title = "title"
"{ENTERPRISE}:costCenter" = "costCentre"
[state]
path = "{tmp_path / "s.db"}"
""")
    toml.chmod(0o600)
    result = CliRunner().invoke(
        cli.main,
        ["--config", str(toml), "plan"],
        env={"AD_PW": ad_server.password, "SCIM_TOKEN": TOKEN, "COLUMNS": "400"},
    )
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if "costCentre" in line]
    assert len(errors) == 1 and "schema has no attribute 'costCentre'" in errors[0], result.output
    assert scim_server.all("Users") == []


# Values the random edits draw from; "" clears the attribute.
POOLS: dict[str, tuple[str, ...]] = {
    "title": ("", "Engineer", "Lead"),
    "department": ("", "Research", "Sales"),
    "telephoneNumber": ("", "+49 30 1", "+49 30 2"),
    "mobile": ("", "+49 170 1", "+49 170 2"),
    "l": ("", "Berlin", "Bonn"),
    "company": ("", "Dirconn GmbH", "Other AG"),
    "division": ("", "Platform", "Board"),
    "preferredLanguage": ("", "de-DE", "en-GB"),
    "employeeNumber": ("", "E-1", "E-2"),
    "employeeID": ("", "ID-1", "ID-2"),
    "givenName": ("", "Ann", "Zed"),
    "manager": ("", "boss", "ann", "dan", "out", "alice", "self"),
}
SN = "sn"
# The account edit: userAccountControl with or without ACCOUNTDISABLE (MS-ADTS 2.2.16),
# drawn for about a quarter of the edits so that disabled managers come up often.
UAC = "userAccountControl"
ACCOUNTDISABLE = 0x2
ACCOUNT = {"enable": str(NORMAL), "disable": str(DISABLED)}
ACCOUNT_SHARE = 0.25
SEEDS = (22, 8, 11)
ROUNDS = 25


def dc_values(admin: Admin, dn: str) -> dict[str, str]:
    """The person's edited attributes (and sn, userAccountControl) as the DC holds them
    now; absent ones left out."""
    names = (*POOLS, SN, UAC)
    admin.conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=list(names))
    (entry,) = admin.conn.response
    raw = {k.lower(): v for k, v in entry["raw_attributes"].items() if v}
    return {a: raw[a.lower()][0].decode() for a in names if a.lower() in raw}


def enabled(dc: dict[str, str]) -> bool:
    return not int(dc[UAC]) & ACCOUNTDISABLE


def expected_on_server(dc: dict[str, str], ids: dict[str, str], dn: str) -> dict[str, Any]:
    """What the mapping makes of the DC's values, written out independently of mapping.py;
    ``ids``: server id by lower-cased DN of the synced people that are enabled on the DC.
    A manager outside the OU, disabled (mapping.py: nothing is sent, so a disabled
    manager's reports lose the reference until the manager is enabled again), or the
    person itself (``dn``) is not sent. A disabled person's account is revoked
    (``active`` false) and keeps following the DC's values."""
    boss = dc.get("manager", "").lower()
    ent = {
        "employeeNumber": dc.get("employeeNumber") or dc.get("employeeID"),
        "department": dc.get("department"),
        "organization": dc.get("company"),
        "division": dc.get("division"),
        "manager": ids.get(boss) if boss != dn.lower() else None,
    }
    given, sn = dc.get("givenName"), dc.get(SN)
    return {
        "active": enabled(dc),
        "title": dc.get("title"),
        "preferredLanguage": dc.get("preferredLanguage"),
        "nickName": f"{given}.{sn}".lower() if given and sn else None,
        "phones": {
            t: dc[a] for t, a in (("work", "telephoneNumber"), ("mobile", "mobile")) if a in dc
        },
        "localities": {"work": dc["l"]} if "l" in dc else {},
        "enterprise": {k: v for k, v in ent.items() if v},
    }


def held_by_server(found: dict[str, Any]) -> dict[str, Any]:
    ent = dict(found.get(ENTERPRISE) or {})
    if "manager" in ent:
        ent["manager"] = ent["manager"]["value"]
    return {
        "active": found.get("active"),
        "title": found.get("title"),
        "preferredLanguage": found.get("preferredLanguage"),
        "nickName": found.get("nickName"),
        "phones": {p["type"]: p["value"] for p in found.get("phoneNumbers") or []},
        "localities": {a["type"]: a.get("locality") for a in found.get("addresses") or []},
        "enterprise": {k: v for k, v in ent.items() if v},
    }


def active_ops(wire: FaultProxy) -> list[tuple[str, Any]]:
    """Every PATCH operation on ``active`` the wire carried: (SCIM id, value)."""
    return [
        (path.rstrip("/").rsplit("/", 1)[-1], op.get("value"))
        for m, path, body in wire.requests
        if m == "PATCH" and "/Users/" in path
        for op in json.loads(body)["Operations"]
        if op.get("path") == "active"
    ]


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
def test_random_attribute_edits_on_the_dc_converge_to_the_dcs_values(
    seed: int,
    tmp_path: Path,
    people: People,
    admin: Admin,
    ad_server: AdServer,
    wire: FaultProxy,
    scim_server: ScimServer,
) -> None:
    """Seeded random rounds of one to four edits on the DC: mapped attributes set,
    changed, cleared (employeeNumber and its fallback employeeID; givenName under the
    nickName template; managers set, cleared, cycled, pointed at oneself or outside the
    OU), and people disabled or enabled again (userAccountControl's ACCOUNTDISABLE), managers
    among them: each sync is PATCHes only, its only ``active`` operations are the round's
    disables (false) and enables (true), once per person, the next full plan is empty and
    every mapped value and ``active`` on the server is what the DC holds."""
    # One person of four disabled is 25% of the managed accounts: more than the guard's
    # default max_revocation_ratio (10%), which would refuse the run.
    synced = runner(
        tmp_path,
        ad_server,
        people.ou,
        wire.url + scim_server.path,
        sync={"max_revocation_ratio": 1.0},
    )
    first = synced.run("sync")
    assert first.status == "ok", first.error
    dns = {"boss": people.boss, "ann": people.ann, "dan": people.dan, "out": people.out}
    admin.conn.search(
        f"OU=People,{ad_server.ou}", "(sAMAccountName=alice)", attributes=["distinguishedName"]
    )
    alice = admin.conn.response[0]["dn"]
    original = {n: dc_values(admin, dn) for n, dn in dns.items()}
    assert all(enabled(dc) for dc in original.values())
    ids = {n: user(scim_server, people.mail(n))["id"] for n in dns}
    name_of = {i: n for n, i in ids.items()}
    rng = random.Random(seed)
    log: list[tuple[str, str, str]] = []
    patched = toggled = 0
    # Rounds after which a manager is disabled; in which a manager was disabled; enabled.
    disabled_boss = gone = back = 0
    dc = original
    try:
        for rounds in range(ROUNDS):
            for _ in range(rng.randint(1, 4)):
                who = rng.choice(sorted(dns))
                if rng.random() < ACCOUNT_SHARE:
                    attr, value = UAC, rng.choice(sorted(ACCOUNT))
                    log.append((who, attr, value))
                    admin.modify(dns[who], **{UAC: ACCOUNT[value]})
                    continue
                attr = rng.choice(sorted(POOLS))
                value = rng.choice(POOLS[attr])
                log.append((who, attr, value))
                if attr == "manager" and value:
                    value = {"alice": alice, "self": dns[who]}.get(value) or dns[value]
                admin.conn.modify(
                    dns[who], {attr: [(ldap3.MODIFY_REPLACE, [value] if value else [])]}
                )
            before, dc = dc, {n: dc_values(admin, dn) for n, dn in dns.items()}
            flipped = {n: enabled(dc[n]) for n in dns if enabled(dc[n]) != enabled(before[n])}
            wire.reset()
            result = synced.run("sync")
            assert result.status in ("ok", "no-changes", "unchanged"), (rounds, log, result.error)
            assert {m for m, _ in writes(wire)} <= {"PATCH"}, (rounds, log, writes(wire))
            # Disabling is a revoke (PATCH active false), enabling a restore (true): one
            # each for exactly the people whose account flag changed in this round.
            sent = [(name_of[i], v) for i, v in active_ops(wire)]
            assert sorted(sent) == sorted(flipped.items()), (rounds, log, sent)
            patched += bool(writes(wire))
            toggled += len(flipped)
            left = synced.run("plan", full=True)
            assert left.status == "no-changes", (
                rounds,
                log,
                [describe(c) for c in left.plan.changes],
            )
            on = {dn.lower(): ids[n] for n, dn in dns.items() if enabled(dc[n])}
            for n, dn in dns.items():
                want = expected_on_server(dc[n], on, dn)
                got = held_by_server(user(scim_server, people.mail(n)))
                assert got == want, (rounds, n, log)
            bosses = {
                b
                for n in dns
                for b in dns
                if b != n and dc[n].get("manager", "").lower() == dns[b].lower()
            }
            disabled_boss += any(not enabled(dc[b]) for b in bosses)
            gone += any(flipped.get(b) is False for b in bosses)
            back += any(flipped.get(b) for b in bosses)
        assert patched >= ROUNDS // 2, f"only {patched} of {ROUNDS} rounds changed the server"
        # The seeds are chosen to reach the account edits' cases more than once.
        reached = (toggled, disabled_boss, gone, back)
        assert toggled >= 6 and disabled_boss >= 2 and gone >= 2 and back >= 2, reached
    finally:
        for n, dn in dns.items():
            admin.conn.modify(
                dn,
                {
                    a: [(ldap3.MODIFY_REPLACE, [original[n][a]] if a in original[n] else [])]
                    for a in (*POOLS, UAC)
                },
            )
