"""The CLI end to end: the file connector's sample directory to a real scim2-server."""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dirconnector import cli
from tests.integration.scim.conftest import TOKEN, ScimServer
from tests.integration.scim.conftest import scim_process as scim_process  # a shared fixture

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "directory.json"


@dataclass
class Env:
    """A profile on disk: its directory file, its config, and the server tenant."""

    tmp: Path
    server: ScimServer
    directory: Path
    config: Path

    def run(self, *args: str) -> Result:
        result = CliRunner().invoke(cli.main, ["--config", str(self.config), *args],
                                    catch_exceptions=False, env={"SCIM_TOKEN": TOKEN})
        return result

    def edit(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.directory.read_text())
        return data

    def save(self, data: dict[str, Any]) -> None:
        self.directory.write_text(json.dumps(data))

    def user(self, data: dict[str, Any], login: str) -> dict[str, Any]:
        return next(u for u in data["users"] if u["user_name"] == login)

    def server_user(self, email: str) -> dict[str, Any]:
        found = self.server.get("Users", filter=f'userName eq "{email}"')["Resources"]
        assert isinstance(found, list) and len(found) == 1, found
        user: dict[str, Any] = found[0]
        return user

    def write_config(self, **sync: object) -> None:
        lines = [f"{k} = {json.dumps(v)}" for k, v in sync.items()]
        self.config.write_text(f"""
profile = "cli-test"
[source]
type = "file"
users = "{self.directory}"
[target]
type = "scim"
url = "{self.server.url}"
token_env = "SCIM_TOKEN"
[sync]
{chr(10).join(lines)}
[state]
path = "{self.tmp / 'state.db'}"
""")
        self.config.chmod(0o600)


@pytest.fixture
def env(tmp_path: Path, scim_process: ScimServer) -> Env:
    server = ScimServer(scim_process.port, scim_process.process, f"c{uuid.uuid4().hex[:12]}")
    directory = tmp_path / "directory.json"
    shutil.copy(EXAMPLES, directory)
    e = Env(tmp_path, server, directory, tmp_path / "dirconnector.toml")
    e.write_config()
    return e
