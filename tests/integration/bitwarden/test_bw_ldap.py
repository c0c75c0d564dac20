"""A real slapd -> the bitwarden target against the test server (issue 8's LDAP path)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dirconnector.connectors.ldap.connector import LdapConnector, LdapSettings
from dirconnector.diff import Policy, diff
from dirconnector.outcome import Outcome
from dirconnector.plan import Plan
from dirconnector.state_space import ConnectorState
from dirconnector.targets.bitwarden.target import BitwardenSettings, BitwardenTarget
from dirconnector.targets.scim.target import ScimSettings, ScimTarget
from dirconnector.testing import managed_refs
from tests.emulators.bitwarden.org import REVOKED
from tests.emulators.bitwarden.server import BitwardenServer
from tests.integration.ldap.conftest import ldapdata, ldapmodify, running_slapd

from .conftest import target_for

pytestmark = pytest.mark.integration
USERS, GROUPS = 2300, 20          # more than 2,000: the import must be batched
POLICY = Policy(remove_missing=True)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A throwaway slapd with generated people and nested groups, for this module."""
    with running_slapd(tmp_path_factory.mktemp("bw-slapd"), USERS, GROUPS) as env:
        yield env


def connector(slapd: dict[str, str]) -> LdapConnector:
    return LdapConnector(LdapSettings(
        type="ldap", url=slapd["SLAPD_URL"], bind_dn=slapd["SLAPD_READER_DN"],
        password=slapd["SLAPD_READER_PASSWORD"], disabled_filter="(pwdAccountLockedTime=*)",
        backend="ldap3"))


def plan_for(source: LdapConnector, target: BitwardenTarget | ScimTarget) -> Plan:
    return diff(source.fetch(ConnectorState()), target.snapshot(), POLICY, managed_refs(target),
                target.user_fields)


def apply(target: BitwardenTarget | ScimTarget, plan: Plan) -> list[Outcome]:
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    return outcomes


def test_ldap_to_bitwarden(slapd: dict[str, str], bw_server: BitwardenServer) -> None:
    """Batched first sync, an empty second plan, a lock revokes exactly one."""
    data = ldapdata
    source, target = connector(slapd), target_for(bw_server)
    first = apply(target, plan_for(source, target))
    assert first and [o for o in first if o.status != "ok"] == []
    bodies = bw_server.imports()
    assert len(bodies) >= 2 and all(b["largeImport"] for b in bodies)
    desired = source.fetch(ConnectorState())
    active = {u.email for u in desired.users.values() if u.active}
    on_server = {m.email for m in bw_server.org.members.values() if m.status != REVOKED}
    assert on_server == active

    # Names are not compared: Bitwarden members own theirs (BitwardenTarget.user_fields).
    assert plan_for(source, target).empty

    victim = next(i for i in range(100, USERS) if data.has_mail(i) and not data.is_disabled(i))
    ldapmodify(slapd, f"dn: {data.user_dn(victim)}\nchangetype: modify\n"
                      f"add: pwdAccountLockedTime\npwdAccountLockedTime: {data.LOCKED}\n")
    locked = plan_for(source, target)
    assert [c.kind for c in locked.changes] == ["revoke_user"]
    assert all(o.status == "ok" for o in apply(target, locked))
    assert bw_server.member(data.email(victim)).status == REVOKED  # type: ignore[union-attr]


def test_ldap_to_bitwarden_scim_endpoint(slapd: dict[str, str],
                                         bw_server: BitwardenServer) -> None:
    """slapd -> the scim target, flavor bitwarden, members read via the Public API: converges."""
    source = connector(slapd)
    api = BitwardenSettings(type="bitwarden", server_url=bw_server.url,
                            client_id=bw_server.client_id, client_secret=bw_server.client_secret)
    target = ScimTarget(ScimSettings(type="scim", url=bw_server.scim_url,
                                     token=bw_server.scim_key, public_api=api))
    first = apply(target, plan_for(source, target))
    assert first and [o for o in first if o.status != "ok"] == []
    desired = source.fetch(ConnectorState())
    active = {u.email for u in desired.users.values() if u.active}
    assert {m.email for m in bw_server.org.members.values() if m.status != REVOKED} == active
    groups = {g.name: len(g.member_ids) for g in bw_server.org.groups.values()}
    assert len(groups) == len(desired.groups) and sum(groups.values()) > 0
    assert plan_for(source, target).empty
