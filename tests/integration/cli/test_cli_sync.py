"""`dirconnector` commands against a real SCIM server, as an administrator runs them."""

from __future__ import annotations

import json

import pytest

from .conftest import TOKEN, Env

pytestmark = pytest.mark.integration


def test_full_sync_then_nothing_to_do(env: Env):
    """The first sync creates the sample directory; the second and a --full one find nothing."""
    first = env.run("sync")
    assert first.exit_code == 0, first.output
    assert "Plan: 40 to add, 7 to change, 0 to revoke or remove." in first.output
    users = env.server.all("Users")
    assert len(users) == 33 and sum(1 for u in users if u["active"]) == 33
    assert len(env.server.all("Groups")) == 7
    second = env.run("sync")
    assert second.exit_code == 0 and "No changes" in second.output
    full = env.run("sync", "--full")
    assert "No changes. The server matches the directory." in full.output


def test_plan_writes_nothing_and_detailed_exitcode(env: Env):
    """`plan` changes nothing; --detailed-exitcode says 2 when changes are pending, else 0."""
    result = env.run("plan", "--detailed-exitcode")
    assert result.exit_code == 2 and "+ create user alovelace@example.com" in result.output
    assert env.server.all("Users") == []
    env.run("sync")
    assert env.run("plan", "--detailed-exitcode").exit_code == 0


def test_name_change_is_one_update(env: Env):
    """Renaming one person in the directory is one update on the server."""
    env.run("sync")
    data = env.edit()
    env.user(data, "alovelace")["display_name"] = "Ada King"
    env.save(data)
    result = env.run("sync", "--format", "json")
    out = json.loads(result.stdout)
    assert [c["kind"] for c in out["plan"]["changes"]] == ["update_user"]
    assert env.server_user("alovelace@example.com")["displayName"] == "Ada King"


def test_disable_is_one_revoke(env: Env):
    """Disabling one person revokes exactly that account (active=false on the server)."""
    env.run("sync")
    data = env.edit()
    env.user(data, "ghopper")["active"] = False
    env.save(data)
    result = env.run("sync", "--format", "json")
    out = json.loads(result.stdout)
    assert [(c["kind"], c["email"]) for c in out["plan"]["changes"]] == [
        ("revoke_user", "ghopper@example.com")]
    assert env.server_user("ghopper@example.com")["active"] is False
    assert sum(1 for u in env.server.all("Users") if u["active"]) == 32


def test_removing_from_a_group_is_one_patch(env: Env):
    """Taking a person out of a leaf group removes them there and from its parents."""
    env.run("sync")
    data = env.edit()
    sales = next(g for g in data["groups"] if g["name"] == "Sales")
    victim = env.user(data, "dknuth")
    sales["members"].remove(victim["id"])
    env.save(data)
    result = env.run("sync", "--format", "json")
    changes = json.loads(result.stdout)["plan"]["changes"]
    assert sorted((c["kind"], c["group_name"]) for c in changes) == [
        ("remove_members", "Everyone"), ("remove_members", "Sales")]
    groups = {g["displayName"]: g for g in env.server.all("Groups")}
    ref = env.server_user("dknuth@example.com")["id"]
    assert ref not in {m["value"] for m in groups["Sales"].get("members", [])}


def test_guard_refusal_leaves_server_untouched(env: Env):
    """Emptying most of the directory with remove_missing is refused, exit 3, nothing changes."""
    env.write_config(remove_missing=True)
    env.run("sync")
    data = env.edit()
    data["users"] = data["users"][:10]
    env.save(data)
    before = env.server.all("Users")
    result = env.run("sync")
    assert result.exit_code == 3
    assert "refused by the safety guard" in result.output and "--force" in result.output
    assert env.server.all("Users") == before


def test_saved_plan_applies_later_and_stale_plan_is_refused(env: Env):
    """plan --out then apply FILE applies it; a plan older than a server change is refused."""
    plan_file = env.tmp / "plan.json"
    assert env.run("plan", "--out", str(plan_file)).exit_code == 0
    assert json.loads(plan_file.read_text())["format_version"] == 1
    applied = env.run("apply", str(plan_file))
    assert applied.exit_code == 0, applied.output
    assert len(env.server.all("Users")) == 33
    stale = env.run("apply", str(plan_file))
    assert stale.exit_code == 1 and "server has changed since this plan was made" in stale.output


def test_history_lists_runs_and_journal(env: Env):
    """history shows the runs; --run shows one run's journalled changes."""
    env.run("sync")
    out = json.loads(env.run("history", "--format", "json").stdout)
    assert out[0]["status"] == "ok" and out[0]["command"] == "sync"
    journal = json.loads(env.run("history", "--run", out[0]["id"], "--format", "json").stdout)
    assert len(journal) == 47 and {j["status"] for j in journal} == {"ok"}


def test_config_show_redacts_and_validate_passes(env: Env):
    """config show never prints the token; config validate says valid."""
    env.config.write_text(env.config.read_text().replace('token_env = "SCIM_TOKEN"',
                                                         f'token = "{TOKEN}"'))
    shown = env.run("config", "show")
    assert TOKEN not in shown.output and "********" in shown.output
    assert "Configuration is valid" in env.run("config", "validate").output


def test_unknown_key_is_one_line_error_and_no_server_change(env: Env):
    """A typo in [sync] exits 1 with the TOML path, before touching the server."""
    env.config.write_text(env.config.read_text() + "\n")
    env.write_config(remove_missin=True)
    result = env.run("sync")
    assert result.exit_code == 1
    assert "sync.remove_missin: unknown key; did you mean 'remove_missing'?" in result.output
    assert env.server.all("Users") == []


def test_bad_token_is_one_clear_line(env: Env):
    """A wrong bearer token fails check with one line naming the problem, not the token."""
    env.config.write_text(env.config.read_text().replace('token_env = "SCIM_TOKEN"',
                                                         'token = "wrong-token-xyz"'))
    result = env.run("sync")
    assert result.exit_code == 1
    assert "401" in result.output and "wrong-token-xyz" not in result.output
