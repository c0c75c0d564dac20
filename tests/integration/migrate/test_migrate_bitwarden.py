"""`dirconnector migrate` on the Bitwarden-compatible test server, through the CLI.

The organization is provisioned by `dirconnector sync` (bitwarden target, Public API
import); the hand-off is then checked with the requests an IdP makes against
Bitwarden's SCIM v2 endpoint (GET /Users?filter=..., GET /Groups?filter=...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.bitwarden.org import CUSTOM
from tests.emulators.bitwarden.server import BitwardenServer

from .conftest import IdpClient, Profile

pytestmark = pytest.mark.integration


def provision(p: Profile, server: BitwardenServer) -> None:
    """Sync the directory, then the world moves on: eve and ivy are invited by hand,
    dave and ivy join the directory (not synced yet)."""
    result = p.run("sync")
    assert result.exit_code == 0, result.output
    server.add_member("eve@example.com")
    server.add_member("ivy@example.com")
    p.write(late=True)


def counts(p: Profile, idp: str) -> dict[str, Any]:
    result = p.run("migrate", "plan", "--to-idp", idp, "--scope-group", "Staff",
                   "--format", "json")
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.output)
    return out


def verdicts(plan: dict[str, Any]) -> dict[str, str]:
    return {m["email"]: m["verdict"] for m in plan["members"]}


def test_plan_counts_for_entra_and_okta(bw_profile: Profile, bw_server: BitwardenServer):
    """Entra and Okta presets give the adopt / conflict / new / unmanaged counts their
    mappings imply, and writing nothing."""
    provision(bw_profile, bw_server)
    before = len(bw_server.requests)
    entra = counts(bw_profile, "entra")
    c = entra["counts"]
    assert (c["members.adopt_external_id"], c["members.adopt_user_name"], c["members.conflict"],
            c["members.new"], c["members.unmanaged"]) == (0, 3, 4, 1, 3)
    assert (c["groups.matched_external_id"], c["groups.unmanaged"], c["members.changes"]) == (
        1, 1, 3)
    v = verdicts(entra)
    assert v["ivy@example.com"] == "adopt_user_name" and v["dave@example.com"] == "new"
    assert v["carol@example.com"] == v["eve@example.com"] == "unmanaged"
    frank = next(m for m in entra["members"] if m["email"] == "frank@example.com")
    assert "without @" in frank["reason"] and frank["idp_user_name"] == "frank"
    assert any("1 in-scope user(s) have a directory login without @" in n
               for n in entra["notes"])
    okta = counts(bw_profile, "okta")["counts"]
    assert (okta["members.adopt_external_id"], okta["members.adopt_user_name"],
            okta["members.conflict"], okta["members.new"], okta["members.unmanaged"]) == (
        4, 1, 2, 1, 3)
    assert okta["groups.matched_display_name"] == 1 and okta["groups.changes"] == 0
    writes = [r for r in bw_server.requests[before:] if r.method != "GET"
              and "connect/token" not in r.path]
    assert writes == []


def test_apply_refuses_conflicts_unless_forced(bw_profile: Profile, bw_server: BitwardenServer,
                                               tmp_path: Path):
    """With conflicts, apply exits 3, writes no map, changes nothing and freezes nothing."""
    provision(bw_profile, bw_server)
    before = {m.id: m.external_id for m in bw_server.org.members.values()}
    result = bw_profile.run("migrate", "apply", "--to-idp", "entra", "--scope-group", "Staff",
                            "--map", str(tmp_path / "map.csv"))
    assert result.exit_code == 3 and "4 member conflict(s)" in result.output
    assert not (tmp_path / "map.csv").exists()
    assert {m.id: m.external_id for m in bw_server.org.members.values()} == before
    assert bw_profile.run("sync").exit_code == 0


def test_plan_apply_lookups_rollback(bw_profile: Profile, bw_server: BitwardenServer,
                                     tmp_path: Path):
    """apply makes every adopted member findable by the IdP's own filters, freezes the
    profile (sync exits 1 and says how to undo), and rollback restores every externalId
    byte for byte and unfreezes."""
    provision(bw_profile, bw_server)
    idp = IdpClient(bw_server.scim_url, bw_server.scim_key)
    before = idp.dump()
    mapfile = tmp_path / "handoff.csv"
    plan = counts(bw_profile, "entra")
    result = bw_profile.run("migrate", "apply", "--to-idp", "entra", "--scope-group", "Staff",
                            "--force", "--map", str(mapfile))
    assert result.exit_code == 0, result.output
    assert "frozen" in result.output
    for m in plan["members"]:
        if m["verdict"] not in ("adopt_user_name", "adopt_external_id"):
            continue
        by_ext = idp.search("Users", "externalId", m["idp_external_id"])
        by_name = idp.search("Users", "userName", m["idp_user_name"])
        assert [u["userName"] for u in by_ext] == [m["email"]]
        assert [u["externalId"] for u in by_name] == [m["idp_external_id"]]
    staff = idp.search("Groups", "displayName", "Staff")
    assert [g["externalId"] for g in staff] == ["g-staff"]
    assert idp.search("Groups", "externalId", "g-staff")[0]["id"] == staff[0]["id"]
    # Conflicts were left exactly as they were.
    assert bw_server.member("bob@example.com").external_id == "u-bob"  # type: ignore[union-attr]

    refused = bw_profile.run("sync")
    assert refused.exit_code == 1
    assert "handed to the identity provider" in refused.output
    assert "migrate rollback --map FILE" in refused.output

    back = bw_profile.run("migrate", "rollback", "--map", str(mapfile))
    assert back.exit_code == 0, back.output
    assert idp.dump() == before
    after_sync = bw_profile.run("sync")
    assert after_sync.exit_code == 0, after_sync.output


def test_map_is_complete_before_the_first_change(bw_profile: Profile,
                                                 bw_server: BitwardenServer, tmp_path: Path):
    """The id map holds every planned row even when the first write fails; the failure
    is reported (exit 1) and the rows that landed still freeze the profile."""
    provision(bw_profile, bw_server)
    bw_server.fail_next.append(("/public/members/", 400, "The request's model state is "
                                                         "invalid."))
    mapfile = tmp_path / "map.csv"
    result = bw_profile.run("migrate", "apply", "--to-idp", "entra", "--scope-group", "Staff",
                            "--force", "--map", str(mapfile))
    assert result.exit_code == 1 and "FAILED" in result.output
    lines = mapfile.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith('"kind","id","email"')
    assert mapfile.stat().st_mode & 0o077 == 0
    assert bw_profile.run("sync").exit_code == 1


def test_public_api_put_keeps_role_permissions_and_groups(bw_profile: Profile,
                                                          bw_server: BitwardenServer,
                                                          tmp_path: Path):
    """PUT /public/members/{id} sends back type and groups stay: a custom-role member
    keeps its role and its group memberships through apply and rollback."""
    provision(bw_profile, bw_server)
    alice = bw_server.member("alice@example.com")
    assert alice is not None
    alice.type = CUSTOM
    groups_before = {g.id for g in bw_server.org.groups.values() if alice.id in g.member_ids}
    assert groups_before
    result = bw_profile.run("migrate", "apply", "--to-idp", "entra", "--scope-group", "Staff",
                            "--force", "--map", str(tmp_path / "m.csv"))
    assert result.exit_code == 0, result.output
    assert alice.external_id == "alice" and alice.type == CUSTOM
    assert {g.id for g in bw_server.org.groups.values() if alice.id in g.member_ids} == \
        groups_before
    puts = bw_server.calls("PUT", f"/public/members/{alice.id}")
    assert puts and "groups" not in puts[0].body and puts[0].body["type"] == CUSTOM


def test_scim_flavor_cycle_on_bitwarden(bw_scim_profile: Profile, bw_server: BitwardenServer,
                                        tmp_path: Path):
    """Through the scim target (Bitwarden SCIM, PATCH externalId): apply aligns, the IdP
    finds, rollback restores byte for byte (ivy's absent id included)."""
    provision(bw_scim_profile, bw_server)
    idp = IdpClient(bw_server.scim_url, bw_server.scim_key)
    before = idp.dump()
    mapfile = tmp_path / "scim.csv"
    result = bw_scim_profile.run("migrate", "apply", "--to-idp", "entra", "--scope-group",
                                 "Staff", "--force", "--map", str(mapfile))
    assert result.exit_code == 0, result.output
    assert [u["userName"] for u in idp.search("Users", "externalId", "ivy")] == [
        "ivy@example.com"]
    assert bw_server.calls("PATCH", "/users/")
    assert bw_scim_profile.run("migrate", "rollback", "--map", str(mapfile)).exit_code == 0
    assert idp.dump() == before
    assert bw_server.member("ivy@example.com").external_id is None  # type: ignore[union-attr]
