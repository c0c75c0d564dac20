"""Watch with an attribute mapping: batches carry mapped attributes and managers exactly
as a full read does (slapd with syncprov -> scim2-server with the enterprise extension)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dirconnector.mapping import ENTERPRISE
from dirconnector.state import open_store
from dirconnector.sync import Runner
from tests.integration.feedwatch import until
from tests.integration.ldap.conftest import ldapmodify
from tests.integration.scim.conftest import ScimServer

from .conftest import Running, ldapdata, make_profile
from .test_watch_ldap import scim_users

pytestmark = pytest.mark.integration

MAPPING = {
    "title": "title",
    f"{ENTERPRISE}:employeeNumber": "employeeNumber",
    f"{ENTERPRISE}:manager": "manager",
    'phoneNumbers[type eq "work"].value': "telephoneNumber",
}


def manager_of(resource: dict[str, Any]) -> str:
    return str(((resource.get(ENTERPRISE) or {}).get("manager") or {}).get("value") or "")


def full_plan_is_empty(profile: Any) -> None:
    store = open_store(profile.settings.state)
    try:
        result = Runner(profile, store).run("plan", full=True)
        assert result.plan is not None and result.plan.changes == (), result.plan
    finally:
        store.close()


def one_batch(run: Running, slapd: dict[str, str], ldif: str) -> None:
    """``ldif`` applied with ldapmodify; returns once watch has applied its whole batch."""
    applied = run.watcher.batches
    ldapmodify(slapd, ldif)
    until(lambda: run.watcher.batches > applied, 10)


def test_an_attribute_edit_reaches_the_server_and_managers_stay(
    tmp_path: Path, slapd_rw: dict[str, str], scim_server: ScimServer
) -> None:
    """One ldapmodify of title: the server's title follows; the manager reference, which
    the batch's own read cannot resolve (the manager is not in it), is kept."""
    profile = make_profile(tmp_path, slapd_rw, scim_server, MAPPING)
    with Running(profile) as run:
        until(lambda: run.watcher.full_syncs >= 1 and bool(run.watcher.position), 30)
        users = scim_users(scim_server)
        me, boss = users[ldapdata.email(52)], users[ldapdata.email(5)]
        assert me["title"] == ldapdata.TITLES[52 % 5]
        assert me[ENTERPRISE]["employeeNumber"] == "E000052"
        assert manager_of(me) == boss["id"]
        ldapmodify(
            slapd_rw,
            f"dn: {ldapdata.user_dn(52)}\nchangetype: modify\n"
            f"replace: title\ntitle: Principal Engineer\n",
        )
        until(lambda: scim_users(scim_server)[ldapdata.email(52)].get("title")
              == "Principal Engineer", 5)
        batches = run.watcher.batches
        me = scim_users(scim_server)[ldapdata.email(52)]
        assert manager_of(me) == boss["id"]
        assert me[ENTERPRISE]["employeeNumber"] == "E000052"
        assert me["phoneNumbers"][0]["value"] == "+1 555 0000052"
    assert run.error is None, run.error
    assert batches >= 1
    full_plan_is_empty(profile)


def test_a_deleted_manager_is_cleared_from_their_reports(
    tmp_path: Path, slapd_rw: dict[str, str], scim_server: ScimServer
) -> None:
    """Deleting u000004 (who manages u000040-49): the reports' manager is cleared on the
    server in the same batch, as a full read would; then a full plan is empty."""
    profile = make_profile(tmp_path, slapd_rw, scim_server, MAPPING)
    with Running(profile) as run:
        until(lambda: run.watcher.full_syncs >= 1 and bool(run.watcher.position), 30)
        report = ldapdata.email(41)
        assert manager_of(scim_users(scim_server)[report]) == \
            scim_users(scim_server)[ldapdata.email(4)]["id"]
        applied = run.watcher.batches
        ldapmodify(slapd_rw, f"dn: {ldapdata.user_dn(4)}\nchangetype: delete\n")
        until(lambda: run.watcher.batches > applied, 10)      # the whole batch
        assert manager_of(scim_users(scim_server)[report]) == ""
        assert scim_users(scim_server)[report]["title"] == ldapdata.TITLES[41 % 5]
    assert run.error is None, run.error
    full_plan_is_empty(profile)


def test_a_disabled_manager_is_cleared_from_their_reports_and_comes_back(
    tmp_path: Path, slapd_rw: dict[str, str], scim_server: ScimServer
) -> None:
    """Locking u000004 (who manages u000040-49): their account is revoked and the reports'
    manager is cleared in the same batch, as a full read would (a mapping references only
    an active manager); unlocking restores both. A full plan is empty after each."""
    profile = make_profile(tmp_path, slapd_rw, scim_server, MAPPING)
    boss_dn, boss, report = ldapdata.user_dn(4), ldapdata.email(4), ldapdata.email(41)
    with Running(profile) as run:
        until(lambda: run.watcher.full_syncs >= 1 and bool(run.watcher.position), 30)
        boss_id = scim_users(scim_server)[boss]["id"]
        assert manager_of(scim_users(scim_server)[report]) == boss_id
        for op, active, reference in (("add", False, ""), ("delete", True, boss_id)):
            value = f"pwdAccountLockedTime: {ldapdata.LOCKED}\n" if op == "add" else ""
            one_batch(run, slapd_rw, f"dn: {boss_dn}\nchangetype: modify\n"
                      f"{op}: pwdAccountLockedTime\n{value}")
            users = scim_users(scim_server)
            assert users[boss]["active"] is active
            assert manager_of(users[report]) == reference
            full_plan_is_empty(profile)
    assert run.error is None, run.error


def test_a_new_manager_reaches_the_report(
    tmp_path: Path, slapd_rw: dict[str, str], scim_server: ScimServer
) -> None:
    """u000000 (no manager) gets u000006 as manager, u000052 (managed by u000005) gets
    u000006, then u000007 (no mail: not synced), with ldapmodify: the report's reference
    follows in the batch, as a full read would, though no manager is in the batch."""
    profile = make_profile(tmp_path, slapd_rw, scim_server, MAPPING)
    assert not ldapdata.has_mail(7)
    with Running(profile) as run:
        until(lambda: run.watcher.full_syncs >= 1 and bool(run.watcher.position), 30)
        six = scim_users(scim_server)[ldapdata.email(6)]["id"]
        assert manager_of(scim_users(scim_server)[ldapdata.email(0)]) == ""
        for report, boss, want in ((0, 6, six), (52, 6, six), (52, 7, "")):
            one_batch(run, slapd_rw, f"dn: {ldapdata.user_dn(report)}\nchangetype: modify\n"
                      f"replace: manager\nmanager: {ldapdata.user_dn(boss)}\n")
            assert manager_of(scim_users(scim_server)[ldapdata.email(report)]) == want
            full_plan_is_empty(profile)
    assert run.error is None, run.error
