"""Taking over from bwdc on Okta: bwdc's key is the Okta id, as ours.

The Bitwarden test server is seeded as bwdc leaves it after a sync of the emulated org
(tests/emulators/bwdc, Okta rules: every status but DEPROVISIONED is a member, SUSPENDED
sent as active), then import-bwdc, plan, sync, plan.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.emulators import bwdc
from tests.emulators.bitwarden.server import BitwardenServer
from tests.emulators.okta import OktaEmulator
from tests.integration.takeover import import_bwdc

from .conftest import TOKEN, Org

pytestmark = pytest.mark.integration


def test_okta_takeover(emulator: OktaEmulator, org: Org, tmp_path: Path) -> None:
    """Members bwdc created are already right, including the Staged user bwdc synced and we
    skip (kept as it is); sync changes nothing; the plan is empty."""
    sync = {"groups": True, "removeDisabled": False, "largeImport": False,
            "inviteUsersAfterProvisioning": False}
    groups, users = bwdc.okta_entries(org.state)
    server = BitwardenServer()
    server.start()
    try:
        server.add_owner("admin@example.com")
        bwdc.seed(server, bwdc.bwdc_requests(groups, users, sync))
        assert server.member("gina@example.com") is not None     # STAGED: synced by bwdc
        assert server.member("ivan@example.com") is None         # DEPROVISIONED: deleted
        data = bwdc.data_json(server, 3, "directoryOkta", {"orgUrl": emulator.url}, sync)
        t = import_bwdc(tmp_path, data, {"OKTA_API_TOKEN": TOKEN,
                                         "BW_CLIENTSECRET": server.client_secret},
                        source_extra=f'ca_file = "{emulator.ca_file}"')
        plan = t.run("plan")
        assert plan.exit_code == 0, plan.output
        right = len(server.org.members) - 2          # the owner; gina is skipped (Staged)
        assert f"{right} member(s) already carry this connector's id" in plan.output
        # Nothing to change; gina, whom bwdc synced while Staged, is kept exactly as she is.
        assert "No changes to make." in plan.output
        assert "= gina@example.com: status (gina@example.com: STAGED)" in plan.output
        server.clear_log()
        run = t.run("sync")
        assert run.exit_code == 0, run.output
        assert [r for r in server.requests if r.method != "GET"
                and "/connect/token" not in r.path] == []
    finally:
        server.stop()
