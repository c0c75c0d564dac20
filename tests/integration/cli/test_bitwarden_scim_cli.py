"""`dirconnector sync` to Bitwarden's SCIM endpoint, group members read via the Public API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from dirconnector import cli
from tests.emulators.bitwarden.server import BitwardenServer

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "directory.json"


def test_scim_bitwarden_flavor_with_public_api_converges_and_removes_members(tmp_path: Path):
    """With [target.public_api], memberships converge and a removal reaches the server."""
    directory = tmp_path / "d.json"
    shutil.copy(EXAMPLES, directory)
    with BitwardenServer() as bw:
        config = tmp_path / "c.toml"
        config.write_text(f"""
[source]
type = "file"
users = "{directory}"
[target]
type = "scim"
url = "{bw.scim_url}"
token_env = "BW_SCIM_KEY"
[target.public_api]
server_url = "{bw.url}"
api_url = "{bw.api_url}"
identity_url = "{bw.identity_url}"
client_id = "{bw.client_id}"
client_secret_env = "BW_CLIENT_SECRET"
[state]
path = "{tmp_path / 's.db'}"
""")
        config.chmod(0o600)
        env = {"BW_SCIM_KEY": bw.scim_key, "BW_CLIENT_SECRET": bw.client_secret}

        def run(*args: str):
            return CliRunner().invoke(cli.main, ["--config", str(config), *args], env=env)

        first = run("sync")
        assert first.exit_code == 0, first.output
        assert "No changes. The server matches the directory." in run("sync", "--full").output
        shown = run("config", "show").output
        assert bw.client_secret not in shown and bw.scim_key not in shown
        data = json.loads(directory.read_text())
        sales = next(g for g in data["groups"] if g["name"] == "Sales")
        sales["members"] = sales["members"][:-1]   # the last one is in no other group
        directory.write_text(json.dumps(data))
        out = json.loads(run("sync", "--format", "json").stdout)
        assert sorted((c["kind"], c["group_name"]) for c in out["plan"]["changes"]) == [
            ("remove_members", "Everyone"), ("remove_members", "Sales")]
        group = next(g for g in bw.org.groups.values() if g.name == "Sales")
        assert len(group.member_ids) == len(sales["members"])
        assert "No changes" in run("sync", "--full").output
