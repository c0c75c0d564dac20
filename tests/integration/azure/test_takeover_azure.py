"""Taking over from bwdc on Microsoft Entra ID: bwdc's key is the object id, as ours.

The Bitwarden test server is seeded as bwdc leaves it after a sync of the Graph
emulator's tenant (tests/emulators/bwdc, Entra rules), then import-bwdc on bwdc's
data.json (pointed at the emulator), plan, sync, plan.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.emulators import bwdc
from tests.emulators.bitwarden.server import BitwardenServer
from tests.emulators.graph import GraphEmulator
from tests.integration.takeover import import_bwdc

from .conftest import CLIENT_ID, SECRET, Tenant

pytestmark = pytest.mark.integration


def test_entra_takeover(emulator: GraphEmulator, tenant: Tenant, tmp_path: Path) -> None:
    """Every member bwdc created is already right; the guest bwdc synced (and we skip) is
    listed and left as it is; sync changes nothing; the plan is empty."""
    sync = {"groups": True, "removeDisabled": False, "largeImport": False,
            "inviteUsersAfterProvisioning": True}
    groups, users = bwdc.entra_entries(emulator.directory)
    server = BitwardenServer()
    server.start()
    try:
        server.add_owner("admin@contoso.com")
        bwdc.seed(server, bwdc.bwdc_requests(groups, users, sync))
        guest = server.member("gina@fabrikam.com")
        assert guest is not None and guest.external_id == tenant.guest
        data = bwdc.data_json(server, 1, "directoryEntra", {
            "identityAuthority": "login.microsoftonline.com", "tenant": emulator.tenant_id,
            "applicationId": CLIENT_ID}, sync)
        t = import_bwdc(tmp_path, data, {"ENTRA_CLIENT_SECRET": SECRET,
                                         "BW_CLIENTSECRET": server.client_secret},
                        source_extra=f'authority_host = "{emulator.origin}"\n'
                                     f'graph_url = "{emulator.origin}"\n'
                                     f'ca_file = "{emulator.ca_file}"')
        plan = t.run("plan")
        assert plan.exit_code == 0, plan.output
        right = len(server.org.members) - 2          # the owner, the guest
        assert f"{right} member(s) already carry this connector's id" in plan.output
        assert f"user gina@fabrikam.com ('{tenant.guest}'): no directory entry" in plan.output
        assert "No changes. The server matches the directory." in plan.output
        server.clear_log()
        run = t.run("sync")
        assert run.exit_code == 0, run.output
        assert [r for r in server.requests if r.method != "GET"
                and "/connect/token" not in r.path] == []
        assert guest.external_id == tenant.guest
    finally:
        server.stop()
