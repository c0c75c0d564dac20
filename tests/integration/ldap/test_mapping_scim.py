"""slapd -> scim2-server with an attribute mapping, through the runner: the whole pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dirconnector import settings as config
from dirconnector.mapping import ENTERPRISE, MANAGER
from dirconnector.report import describe
from dirconnector.state import open_store
from dirconnector.sync import Runner
from tests.integration.scim.conftest import (  # noqa: F401  # the SCIM server fixtures
    TOKEN,
    ScimServer,
    proxy,
    scim_process,
    scim_server,
)
from tests.integration.scim.proxy import FaultProxy

from .conftest import ldapdata, ldapmodify

pytestmark = pytest.mark.integration

MAPPING: dict[str, Any] = {
    "title": "title",
    "userType": "employeeType",
    "preferredLanguage": "preferredLanguage",
    'phoneNumbers[type eq "work"].value': "telephoneNumber",
    'phoneNumbers[type eq "mobile"].value': "mobile",
    'addresses[type eq "work"].locality': "l",
    f"{ENTERPRISE}:employeeNumber": "employeeNumber",
    f"{ENTERPRISE}:department": {"from": "departmentNumber", "default": "General"},
    "nickName": {"template": "{givenName}.{sn}", "case": "lower"},
    MANAGER: "manager",
}
N = 150                         # a user with mail whose attributes the tests edit


def runner(tmp_path: Path, slapd: dict[str, str], url: str, backend: str) -> Runner:
    data = {
        "source": {"type": "ldap", "url": slapd["SLAPD_URL"], "bind_dn": slapd["SLAPD_READER_DN"],
                   "password": slapd["SLAPD_READER_PASSWORD"], "backend": backend,
                   "disabled_filter": "(pwdAccountLockedTime=*)",
                   # 110 people: u000010-19 manage u000100-199 and report to u000001, who
                   # is not synced; jsmith and lzolc manage each other.
                   "user_filter": "(|(uid=u00001*)(uid=u0001*)(uid=jsmith)(uid=lzolc))"},
        "target": {"type": "scim", "url": url, "token": TOKEN, "mapping": MAPPING},
        "sync": {"remove_missing": True},
        "state": {"path": str(tmp_path / "state.db")},
    }
    profile = config.load(data=data)
    return Runner(profile, open_store(profile.settings.state))


def modify(slapd: dict[str, str], attr: str, value: str | None) -> None:
    # replace without values removes every value, and succeeds when there are none.
    change = f"replace: {attr}\n{attr}: {value}\n" if value else f"replace: {attr}\n"
    ldapmodify(slapd, f"dn: {ldapdata.user_dn(N)}\nchangetype: modify\n{change}")


@pytest.fixture
def synced(tmp_path: Path, slapd: dict[str, str], proxy: FaultProxy,  # noqa: F811
           scim_server: ScimServer) -> Runner:  # noqa: F811
    """A full mapped sync of part of the test directory to a fresh tenant."""
    run = runner(tmp_path, slapd, proxy.url + scim_server.path, "python-ldap")
    result = run.run("sync")
    assert result.status == "ok", result.error
    return run


def test_every_mapped_attribute_lands_and_the_next_plan_is_empty(
        synced: Runner, scim_server: ScimServer) -> None:  # noqa: F811
    """The profile's ten attributes are on the server as mapped; a full re-plan is empty."""
    def user(email: str) -> dict[str, Any]:
        (found,) = scim_server.get("Users", filter=f'userName eq "{email}"')["Resources"]
        return found  # type: ignore[no-any-return]

    one = user(ldapdata.email(N))
    assert one["title"] == ldapdata.TITLES[N % 5] and one["nickName"] == f"given{N}.family{N}"
    assert one["userType"] == "Employee" and one["preferredLanguage"] == "en"
    phones = {p["type"]: p["value"] for p in one["phoneNumbers"]}
    assert phones == {"work": f"+1 555 {N:07d}", "mobile": f"+1 666 {N:07d}"}
    assert one["addresses"][0]["locality"] == ldapdata.CITIES[N % 4]
    assert one[ENTERPRISE]["employeeNumber"] == f"E{N:06d}"
    assert one[ENTERPRISE]["department"] == f"D{N % 20:02d}"
    assert one[ENTERPRISE]["manager"]["value"] == user(ldapdata.email(N // 10))["id"]
    # jsmith and lzolc manage each other: both references are set.
    js, lz = user("john.smith@example.com"), user("lukasz.zolc@example.com")
    assert js[ENTERPRISE]["manager"]["value"] == lz["id"]
    assert lz[ENTERPRISE]["manager"]["value"] == js["id"]
    # u000012's manager u000001 is outside the filter, u000131's u000013 is disabled (no
    # account): no manager is sent for either.
    assert ldapdata.is_disabled(13)
    assert "manager" not in user(ldapdata.email(12)).get(ENTERPRISE, {})
    assert "manager" not in user(ldapdata.email(131)).get(ENTERPRISE, {})
    assert synced.run("plan", full=True).status == "no-changes"


def test_one_changed_attribute_in_slapd_is_one_patch_with_one_operation(
        synced: Runner, slapd: dict[str, str], proxy: FaultProxy) -> None:  # noqa: F811
    """A new title in slapd is exactly one PATCH holding one replace op; then nothing."""
    modify(slapd, "title", "Principal Engineer")
    try:
        proxy.reset()
        result = synced.run("sync")
        assert result.status == "ok"
        writes = [(m, json.loads(b)) for m, _, b in proxy.requests
                  if m in ("PATCH", "PUT", "POST", "DELETE")]
        assert writes == [("PATCH", {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "title", "value": "Principal Engineer"}]})]
        assert synced.run("plan", full=True).status == "no-changes"
    finally:
        modify(slapd, "title", ldapdata.TITLES[N % 5])


class Editor:
    """Edits user N in slapd as the admin; shown without the server's passwords (hypothesis
    prints a failing example's arguments)."""

    def __init__(self, slapd: dict[str, str]) -> None:
        self._slapd = slapd

    def __repr__(self) -> str:
        return "Editor(slapd)"

    def set(self, attr: str, value: str | None) -> None:
        modify(self._slapd, attr, value)


@pytest.fixture
def editor(slapd: dict[str, str]) -> Editor:
    return Editor(slapd)


EDITS = st.lists(st.tuples(
    st.sampled_from(["title", "mobile", "l", "departmentNumber", "manager"]),
    st.sampled_from(["", "A", "B"])), min_size=1, max_size=4)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
def test_property_random_attribute_edits_in_slapd_then_the_next_plan_is_empty(
        synced: Runner, editor: Editor, edits: list[tuple[str, str]]) -> None:
    """Any edits of mapped attributes (set, change, clear, manager moved or removed) are
    synced, and the next full plan is empty."""
    original = dict(ldapdata.profile(N))
    try:
        for attr, value in edits:
            if attr == "manager":
                value = {"": "", "A": ldapdata.user_dn(11), "B": ldapdata.user_dn(7)}[value]
            editor.set(attr, value or None)
        assert synced.run("sync").status in ("ok", "no-changes")
        left = synced.run("plan", full=True)
        assert left.status == "no-changes", [describe(c) for c in left.plan.changes]
    finally:
        for attr in ("title", "mobile", "l", "departmentNumber", "manager"):
            editor.set(attr, original.get(attr))
        synced.run("sync")


def test_check_names_a_mapped_attribute_the_schema_lacks(
        tmp_path: Path, slapd: dict[str, str], scim_server: ScimServer) -> None:  # noqa: F811
    """`dirconnector check` reads the subschema: an unknown attribute fails it, named."""
    from click.testing import CliRunner

    from dirconnector import cli

    config = tmp_path / "c.toml"
    config.write_text(f"""
[source]
type = "ldap"
url = "{slapd['SLAPD_URL']}"
bind_dn = "{slapd['SLAPD_READER_DN']}"
password_env = "LDAP_PW"
[target]
type = "scim"
url = "{scim_server.url}"
token_env = "SCIM_TOKEN"
[target.mapping]
title = "titel"
[state]
path = "{tmp_path / 's.db'}"
""")
    config.chmod(0o600)
    result = CliRunner().invoke(cli.main, ["--config", str(config), "check"], env={
        "LDAP_PW": slapd["SLAPD_READER_PASSWORD"], "SCIM_TOKEN": TOKEN, "COLUMNS": "400"})
    assert result.exit_code == 1
    assert "schema has no attribute 'titel'" in result.output
