"""`dirconnector migrate` on the independent SCIM server (scim2-server), through the CLI.

The generic SCIM path: PATCH replace externalId to align, PATCH remove to restore an
account that had none (RFC 7644 3.5.2.2/3.5.2.3), and the IdP's lookups as filters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.scim.conftest import TOKEN, ScimServer

from .conftest import IdpClient, Profile

pytestmark = pytest.mark.integration


def invite_by_hand(server: ScimServer, email: str) -> None:
    """An account someone created in the application itself: no externalId."""
    resp = requests.post(f"{server.url}/Users", timeout=10,
                         headers={"Authorization": f"Bearer {TOKEN}",
                                  "Content-Type": "application/scim+json"},
                         data=json.dumps({
                             "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                             "userName": email, "active": True,
                             "emails": [{"value": email, "type": "work", "primary": True}]}))
    assert resp.status_code == 201, resp.text


def provision(p: Profile, server: ScimServer) -> None:
    result = p.run("sync")
    assert result.exit_code == 0, result.output
    invite_by_hand(server, "eve@example.com")
    invite_by_hand(server, "ivy@example.com")
    p.write(late=True)


def plan(p: Profile, idp: str) -> dict[str, Any]:
    result = p.run("migrate", "plan", "--to-idp", idp, "--scope-group", "Staff",
                   "--format", "json")
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.output)
    return out


def five(c: dict[str, int]) -> tuple[int, ...]:
    return tuple(c[f"members.{k}"] for k in ("adopt_external_id", "adopt_user_name",
                                             "conflict", "new", "unmanaged"))


def test_plan_counts_for_entra_and_okta(scim_profile: Profile, scim_server: ScimServer):
    """On a generic SCIM server the Entra and Okta presets give the expected counts."""
    provision(scim_profile, scim_server)
    entra = plan(scim_profile, "entra")
    assert five(entra["counts"]) == (0, 3, 4, 1, 2)
    bob = next(m for m in entra["members"] if m["email"] == "bob@example.com")
    assert bob["verdict"] == "conflict" and "bob@corp.onmicrosoft.com" in bob["reason"]
    okta = plan(scim_profile, "okta")
    assert five(okta["counts"]) == (4, 1, 2, 1, 2)


def test_plan_apply_lookups_rollback(scim_profile: Profile, scim_server: ScimServer,
                                     tmp_path: Path):
    """apply makes every adopted member findable by userName and externalId filters,
    sync is refused while frozen, and rollback restores a byte-identical dump (an
    account that had no externalId has none again)."""
    provision(scim_profile, scim_server)
    idp = IdpClient(scim_server.url, TOKEN)
    before = idp.dump()
    planned = plan(scim_profile, "entra")
    mapfile = tmp_path / "m.csv"
    result = scim_profile.run("migrate", "apply", "--to-idp", "entra", "--scope-group",
                              "Staff", "--force", "--map", str(mapfile))
    assert result.exit_code == 0, result.output
    adopted = [m for m in planned["members"]
               if m["verdict"] in ("adopt_user_name", "adopt_external_id")]
    assert len(adopted) == 3
    for m in adopted:
        assert [u["userName"] for u in idp.search("Users", "externalId",
                                                  m["idp_external_id"])] == [m["email"]]
        assert [u.get("externalId") for u in idp.search("Users", "userName",
                                                        m["idp_user_name"])] == [
            m["idp_external_id"]]
    assert [g["externalId"] for g in idp.search("Groups", "displayName", "Staff")] == [
        "g-staff"]
    refused = scim_profile.run("sync")
    assert refused.exit_code == 1 and "migrate rollback" in refused.output
    back = scim_profile.run("migrate", "rollback", "--map", str(mapfile))
    assert back.exit_code == 0, back.output
    assert idp.dump() == before
    ivy = idp.search("Users", "userName", "ivy@example.com")[0]
    assert "externalId" not in ivy
    assert scim_profile.run("sync").exit_code == 0


def test_rollback_refuses_ids_the_idp_changed(scim_profile: Profile, scim_server: ScimServer,
                                              tmp_path: Path):
    """A row whose externalId changed after apply is not overwritten without --force, and
    the profile stays frozen until every row is back."""
    provision(scim_profile, scim_server)
    mapfile = tmp_path / "m.csv"
    assert scim_profile.run("migrate", "apply", "--to-idp", "entra", "--scope-group", "Staff",
                            "--force", "--map", str(mapfile)).exit_code == 0
    alice = IdpClient(scim_server.url, TOKEN).search("Users", "userName",
                                                     "alice@example.com")[0]
    requests.patch(f"{scim_server.url}/Users/{alice['id']}", timeout=10,
                   headers={"Authorization": f"Bearer {TOKEN}",
                            "Content-Type": "application/scim+json"},
                   data=json.dumps({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                    "Operations": [{"op": "replace", "path": "externalId",
                                                    "value": "entra-changed"}]})
                   ).raise_for_status()
    back = scim_profile.run("migrate", "rollback", "--map", str(mapfile))
    assert back.exit_code == 1 and "entra-changed" in back.output
    assert scim_profile.run("sync").exit_code == 1
    forced = scim_profile.run("migrate", "rollback", "--map", str(mapfile), "--force")
    assert forced.exit_code == 0, forced.output
    assert IdpClient(scim_server.url, TOKEN).search("Users", "externalId", "u-alice")
    assert scim_profile.run("sync").exit_code == 0


def mapped_profile(tmp_path: Path, server: ScimServer, group_mapping: str) -> Profile:
    """The scim target with a user mapping (nickName) and the given [target.group_mapping]."""
    p = Profile(tmp_path, f"""[target]
type = "scim"
url = "{server.url}"
token_env = "SCIM_TOKEN"
[target.mapping]
nickName = {{ from = "user_name", case = "lower" }}
[target.group_mapping]
{group_mapping}
""", {"SCIM_TOKEN": TOKEN})
    p.write()
    synced = p.run("sync")
    assert synced.exit_code == 0, synced.output
    return p


def test_plan_recognises_groups_a_group_mapping_renamed(scim_server: ScimServer, tmp_path: Path):
    """Groups synced as dir-<name> are found by their mapped externalId: Entra, which sends
    the directory's names, would duplicate them, and the plan says so (apply refuses);
    the notes name the user mapping the IdP must reproduce."""
    p = mapped_profile(tmp_path, scim_server, 'displayName = "dir-{name}"\n'
                                              'externalId = "dir-{id}"')
    result = p.run("migrate", "plan", "--to-idp", "entra", "--scope-group", "Staff")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Note: [target.mapping] writes 1 attribute(s) (nickName)" in text
    assert "give the Microsoft Entra ID app the same attribute mappings" in text
    groups = {g["name"]: g for g in plan(p, "entra")["groups"]}
    assert groups["Staff"]["verdict"] == "duplicate"
    assert "'dir-Staff' by [target.group_mapping]" in groups["Staff"]["reason"]
    assert groups["Staff"]["current_external_id"] == "dir-g-staff"
    assert groups["dir-Contractors"]["verdict"] == "unmanaged"   # not assigned to the app
    assert "dir-Staff" not in groups
    refused = p.run("migrate", "apply", "--to-idp", "entra", "--scope-group", "Staff")
    assert refused.exit_code == 3, refused.output


def test_apply_gives_groups_keyed_by_a_group_mapping_the_idps_id(scim_server: ScimServer,
                                                                tmp_path: Path):
    """Groups keyed ad-{id} under their own names: apply sets Entra's externalId (the
    directory id), so the IdP's displayName and externalId lookups find the one group."""
    p = mapped_profile(tmp_path, scim_server, 'externalId = "ad-{id}"')
    idp = IdpClient(scim_server.url, TOKEN)
    assert [g["externalId"] for g in idp.search("Groups", "displayName", "Staff")] == [
        "ad-g-staff"]
    staff = next(g for g in plan(p, "entra")["groups"] if g["name"] == "Staff")
    assert (staff["verdict"], staff["change"]) == ("matched_display_name", True)
    result = p.run("migrate", "apply", "--to-idp", "entra", "--scope-group", "Staff",
                   "--force", "--map", str(tmp_path / "m.csv"))
    assert result.exit_code == 0, result.output
    assert [g["externalId"] for g in idp.search("Groups", "displayName", "Staff")] == [
        "g-staff"]
    assert len(idp.search("Groups", "externalId", "g-staff")) == 1
