"""Taking over from bwdc on Google Workspace: bwdc's key is the Google id, as ours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.emulators import bwdc
from tests.emulators.bitwarden.server import BitwardenServer
from tests.integration.takeover import applied, import_bwdc

pytestmark = pytest.mark.integration


def test_google_takeover(env: Any, tmp_path: Path) -> None:
    """Members bwdc created are already right; the one difference bwdc left (a suspended
    member it kept out of its group) is reported and applied; then the plan is empty."""
    sync = {"groups": True, "removeDisabled": False, "largeImport": False,
            "inviteUsersAfterProvisioning": False}
    groups, users = bwdc.google_entries(env.directory)
    server = BitwardenServer()
    server.start()
    try:
        server.add_owner("owner@example.com")
        bwdc.seed(server, bwdc.bwdc_requests(groups, users, sync))
        data = bwdc.data_json(server, 2, "directoryGsuite", {
            "clientEmail": env.account.client_email, "adminUser": "admin@example.com",
            "domain": env.directory.domain}, sync)
        t = import_bwdc(tmp_path, data, {
            "GOOGLE_SERVICE_ACCOUNT_JSON": env.key_file.read_text(),
            "BW_CLIENTSECRET": server.client_secret},
            source_extra=f'api_endpoint = "{env.emulator.base_url}"\n'
                         f'ca_file = "{env.emulator.ca_file}"')
        plan = t.run("plan")
        assert plan.exit_code == 0, plan.output
        assert "differ from what bwdc left: 1 group membership(s) to add" in plan.output
        assert "add to group Sales: +dave@example.com" in plan.output
        run = t.run("sync")
        assert run.exit_code == 0, run.output
        assert applied(run.output)[2] == 0
        again = t.run("plan")
        assert "No changes. The server matches the directory." in again.output
    finally:
        server.stop()
