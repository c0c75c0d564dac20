"""Fixtures: a fresh emulated Workspace account over HTTPS, a delegated service account
with its JSON key on disk, and a factory for connectors pointed at the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dirconnector.connectors._google_api import SCOPES
from dirconnector.connectors.google import GoogleConnector, GoogleSettings
from tests.emulators.google import Directory, GoogleEmulator, ServiceAccount
from tests.emulators.google.seed import Org, seed


@dataclass
class Env:
    """One running emulator and what a test needs to talk to it."""

    emulator: GoogleEmulator
    directory: Directory
    org: Org
    account: ServiceAccount
    key_file: Path
    sleeps: list[float]

    def settings(self, **overrides: Any) -> GoogleSettings:
        data: dict[str, Any] = {
            "type": "google", "credentials_file": str(self.key_file),
            "admin_email": "admin@example.com", "api_endpoint": self.emulator.base_url,
            "ca_file": str(self.emulator.ca_file), "timeout": 10,
        }
        data.update(overrides)
        return GoogleSettings.model_validate({k: v for k, v in data.items() if v is not None})

    def connector(self, **overrides: Any) -> GoogleConnector:
        return GoogleConnector(self.settings(**overrides), sleep=self.sleeps.append)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    directory = Directory()
    org = seed(directory)
    account = directory.oauth.create_service_account()
    directory.oauth.delegate(account.client_id, SCOPES)
    with GoogleEmulator(directory, workdir=tmp_path) as emu:
        key_file = tmp_path / "service-account.json"
        key_file.write_text(json.dumps(account.key_file(emu.token_uri)))
        key_file.chmod(0o600)
        yield Env(emu, directory, org, account, key_file, [])
