"""An attribute mapping through the CLI: file source -> scim2-server, plan renderings, validate."""

from __future__ import annotations

import json

from tests.integration.cli.conftest import Env

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MAPPING = f"""
[target.mapping]
title = "title"
"{ENTERPRISE}:department" = {{ from = "department", default = "General" }}
"{ENTERPRISE}:manager" = "manager"
'phoneNumbers[type eq "work"].value' = "phone"
"""


def mapped(env: Env) -> None:
    """The sample directory with titles, departments, phones and a manager per person."""
    env.config.write_text(env.config.read_text() + MAPPING)
    data = env.edit()
    first = data["users"][0]["id"]
    for n, user in enumerate(data["users"]):
        user["title"] = "Engineer"
        user["phone"] = f"+1 555 {n:04d}"
        if n % 2:
            user["department"] = "R&D"
        if n:
            user["manager"] = first
    env.save(data)


def test_mapped_attributes_sync_and_the_next_plan_is_empty(env: Env):
    """A sync writes the mapped attributes; plan then says No changes."""
    mapped(env)
    result = env.run("sync")
    assert result.exit_code == 0, result.output
    ada = env.server_user("alovelace@example.com")
    grace = env.server_user("ghopper@example.com")
    assert grace["title"] == "Engineer" and grace[ENTERPRISE]["manager"]["value"] == ada["id"]
    assert grace[ENTERPRISE]["department"] == "R&D" and ada[ENTERPRISE]["department"] == "General"
    again = env.run("plan", "--detailed-exitcode")
    assert again.exit_code == 0 and "No changes" in again.output


def test_plan_shows_each_changed_attribute_in_every_format(env: Env):
    """One changed title shows as `title: 'Engineer' → 'Staff Engineer'` in table, markdown,
    json and html."""
    mapped(env)
    env.run("sync")
    data = env.edit()
    env.user(data, "ghopper")["title"] = "Staff Engineer"
    env.save(data)
    table = env.run("plan")
    assert "title: 'Engineer' → 'Staff Engineer'" in table.output
    assert "title: 'Engineer' → 'Staff Engineer'" in env.run("plan", "--format", "markdown").output
    out = json.loads(env.run("plan", "--format", "json").stdout)
    (change,) = out["plan"]["changes"]
    assert (change["fields"], change["before"]) == (["title"], ["Engineer"])
    html = env.run("plan", "--format", "html").output
    assert "Staff Engineer" in html and "title" in html


def test_saved_plan_is_stale_after_a_server_side_attribute_change(env: Env):
    """A plan saved before someone edits a mapped attribute on the server is refused."""
    mapped(env)
    env.run("sync")
    data = env.edit()
    env.user(data, "ghopper")["title"] = "Lead"
    env.save(data)
    plan_file = env.tmp / "plan.json"
    assert env.run("plan", "--out", str(plan_file)).exit_code == 0
    ref = env.server_user("alovelace@example.com")["id"]
    import requests

    from tests.integration.scim.conftest import TOKEN
    requests.patch(f"{env.server.url}/Users/{ref}", timeout=10, headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}, json={
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": "Edited by hand"}]},
    ).raise_for_status()
    stale = env.run("apply", str(plan_file))
    assert stale.exit_code == 1 and "server has changed since this plan was made" in stale.output


def test_config_validate_checks_the_mapping_against_the_server(env: Env):
    """validate refuses, naming it, an extension the server does not declare; an unknown
    core attribute is refused before any connection."""
    env.config.write_text(env.config.read_text() + """
[target.mapping]
"urn:example:params:scim:schemas:extension:acme:2.0:User:badge" = "badge"
""")
    result = env.run("config", "validate")
    assert result.exit_code == 1
    assert "acme:2.0:User:badge: the server's User resource type has no schema" in result.output
    env.config.write_text(env.config.read_text().replace(
        '"urn:example:params:scim:schemas:extension:acme:2.0:User:badge"', "titel"))
    bad = env.run("config", "validate")
    assert bad.exit_code == 1 and "target.mapping: titel: not a core User attribute" in bad.output


def test_config_validate_without_the_server_says_the_mapping_was_not_checked(env: Env):
    """An unreachable server does not fail validate; it says the mapping went unchecked."""
    env.config.write_text(env.config.read_text().replace(env.server.url, "http://127.0.0.1:9/v2")
                          + MAPPING)
    result = env.run("config", "validate")
    assert result.exit_code == 0, result.output
    assert "not checked against the server" in result.output
    assert "Configuration is valid" in result.output
