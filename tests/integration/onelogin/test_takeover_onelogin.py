"""Taking over from bwdc on OneLogin: bwdc's keys are the numeric user and role ids.

bwdc sends ``externalId`` as a JSON number; the server keeps its decimal text (reference
2.6, PermissiveStringConverter), which is what the onelogin connector reads.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from tests.emulators import bwdc
from tests.emulators.bitwarden.server import BitwardenServer
from tests.emulators.onelogin import Account, OneLoginEmulator
from tests.emulators.onelogin.seed import CLIENT_ID, CLIENT_SECRET, Seed
from tests.integration.takeover import import_bwdc

pytestmark = pytest.mark.integration


def test_onelogin_takeover(emulator: OneLoginEmulator, account: Account, ids: Seed,
                           tls: tuple[ssl.SSLContext, Path], tmp_path: Path) -> None:
    """Members and roles bwdc created (numeric ids) are already right; sync changes nothing."""
    sync = {"groups": True, "removeDisabled": False, "largeImport": False,
            "inviteUsersAfterProvisioning": False}
    groups, users = bwdc.onelogin_entries(account, sync)
    bodies = bwdc.bwdc_requests(groups, users, sync)
    assert isinstance(bodies[0]["members"][0]["externalId"], int)   # a JSON number
    server = BitwardenServer()
    server.start()
    try:
        server.add_owner("admin@example.com")
        bwdc.seed(server, bodies)
        data = bwdc.data_json(server, 4, "directoryOnelogin",
                              {"clientId": CLIENT_ID, "region": "us"}, sync)
        t = import_bwdc(tmp_path, data, {"ONELOGIN_CLIENT_SECRET": CLIENT_SECRET,
                                         "BW_CLIENTSECRET": server.client_secret})
        t.profile.write_text(t.text().replace(
            'region = "us"', f'base_url = "{emulator.url}"\nca_file = "{tls[1]}"'))
        plan = t.run("plan")
        assert plan.exit_code == 0, plan.output
        right = len(server.org.members) - 2          # the owner; unactivated (status 0) skipped
        assert f"{right} member(s) already carry this connector's id" in plan.output
        # Nothing to change; the unactivated user bwdc synced is kept exactly as they are.
        assert "No changes to make." in plan.output
        assert "= new@example.com: status" in plan.output
        assert {g.external_id for g in server.org.groups.values()} == {
            str(r) for r in ids.roles.values()}
        server.clear_log()
        run = t.run("sync")
        assert run.exit_code == 0, run.output
        assert [r for r in server.requests if r.method != "GET"
                and "/connect/token" not in r.path] == []
    finally:
        server.stop()
