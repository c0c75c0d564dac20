"""Taking over from bwdc on Active Directory: bwdc's objectGUID text is our external id.

The Bitwarden test server is seeded as bwdc leaves it after a sync of the Samba DC
(tests/emulators/bwdc reads the DC with bwdc's rules: objectGUID through bufToGuid,
``(objectClass=person)`` under userPath, disabled users sent as deleted), then
import-bwdc, plan, sync, plan: nothing to relink, nothing to change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.emulators import bwdc
from tests.emulators.bitwarden.server import BitwardenServer
from tests.integration.ad.conftest import AdServer
from tests.integration.takeover import import_bwdc

pytestmark = pytest.mark.integration


def test_ad_takeover_finds_everyone_as_bwdc_left_them(ad_server: AdServer,
                                                      tmp_path: Path) -> None:
    """bwdc's members and groups on AD already carry our ids: the first plan after
    import-bwdc reports them all right and says "No changes."; sync changes nothing."""
    base = ad_server.base_dn
    sync: dict[str, Any] = {
        "groups": True, "userPath": "OU=People,OU=dirconnector", "userObjectClass": "person",
        "userEmailAttribute": "mail", "groupPath": "OU=Groups,OU=dirconnector",
        "groupObjectClass": "group", "groupNameAttribute": "name", "memberAttribute": "member",
        "emailPrefixAttribute": "sAMAccountName", "revisionDateAttribute": "whenChanged",
        "removeDisabled": True, "largeImport": True, "inviteUsersAfterProvisioning": False}
    groups, users = bwdc.ldap_entries(ad_server.url, ad_server.bind_dn, ad_server.password,
                                      base, sync, ad=True)
    assert len(users) > 1500 and all(not str(u.external_id).startswith("CN=") for u in users)
    server = BitwardenServer()
    server.start()
    try:
        server.add_owner("admin@dirconn.test")
        bwdc.seed(server, bwdc.bwdc_requests(groups, users, sync))
        host, port = ad_server.url.removeprefix("ldap://").split(":")
        data = bwdc.data_json(server, 0, "directoryLdap", {
            "hostname": host, "port": int(port), "ssl": False, "startTls": False,
            "rootPath": base, "username": ad_server.bind_dn, "ad": True, "pagedSearch": True},
            sync)
        t = import_bwdc(tmp_path, data, {"LDAP_BIND_PASSWORD": ad_server.password,
                                         "BW_CLIENTSECRET": server.client_secret})
        members = len(server.org.members) - 1
        plan = t.run("plan")
        assert plan.exit_code == 0, plan.output
        assert f"{members} member(s) already carry this connector's id" in plan.output
        assert "No changes. The server matches the directory." in plan.output
        assert "relink" not in plan.output.split("Takeover from bwdc", 1)[1].split("\n", 2)[2]
        server.clear_log()
        sync_run = t.run("sync")
        assert sync_run.exit_code == 0, sync_run.output
        assert "No changes. The server matches the directory." in sync_run.output
        assert [r for r in server.requests if r.method != "GET"
                and "/connect/token" not in r.path] == []
    finally:
        server.stop()
