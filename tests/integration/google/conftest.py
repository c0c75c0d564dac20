"""Fixtures: a fresh emulated Workspace account over HTTPS, a delegated service account
with its JSON key on disk, and a factory for connectors pointed at the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa

from dirconnector.connectors.google.api import SCOPES
from dirconnector.connectors.google.connector import GoogleConnector, GoogleSettings
from dirconnector.diff import Policy, diff
from dirconnector.outcome import Outcome
from dirconnector.plan import Plan
from dirconnector.state_space import ConnectorState
from dirconnector.testing import FakeTarget, managed_refs
from tests.emulators.google import Directory, GoogleEmulator, ServiceAccount
from tests.emulators.google.seed import Org, seed
from tests.integration.scim.conftest import (  # noqa: F401  # the SCIM server fixtures
    scim_process,
    scim_server,
)


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
            "ca_file": str(self.emulator.ca_file), "timeout": 10, "feed_poll_interval": "0s",
        }
        data.update(overrides)
        return GoogleSettings.model_validate({k: v for k, v in data.items() if v is not None})

    def connector(self, **overrides: Any) -> GoogleConnector:
        return GoogleConnector(self.settings(**overrides), sleep=self.sleeps.append)


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def env(tmp_path: Path, tls_ca: trustme.CA, rsa_key: rsa.RSAPrivateKey) -> Iterator[Env]:
    """A fresh seeded account, served over HTTPS, with delegation of the three scopes."""
    directory = Directory()
    org = seed(directory)
    account = directory.oauth.create_service_account(private_key=rsa_key)
    directory.oauth.delegate(account.client_id, SCOPES)
    with GoogleEmulator(directory, workdir=tmp_path, ca=tls_ca) as emu:
        key_file = tmp_path / "service-account.json"
        key_file.write_text(json.dumps(account.key_file(emu.token_uri)))
        key_file.chmod(0o600)
        yield Env(emu, directory, org, account, key_file, [])


class Pipeline:
    """source -> diff -> FakeTarget, the pure pipeline of DESIGN.md, one plan at a time."""

    def __init__(self, connector: GoogleConnector) -> None:
        self.connector = connector
        self.target = FakeTarget()
        self.policy = Policy(remove_missing=True)

    def plan(self) -> Plan:
        desired = self.connector.fetch(ConnectorState())
        return diff(desired, self.target.snapshot(), self.policy, managed_refs(self.target))

    def apply(self) -> Plan:
        plan = self.plan()
        outcomes: list[Outcome] = []
        self.target.apply(plan, outcomes.append)
        assert [o for o in outcomes if o.status != "ok"] == []
        return plan


@pytest.fixture
def pipeline(env: Env) -> Pipeline:
    """A converged pipeline: the first sync has been applied and the next plan is empty."""
    pipe = Pipeline(env.connector())
    pipe.apply()
    assert pipe.plan().empty
    return pipe


@pytest.fixture
def fresh_pipeline(env: Env) -> Pipeline:
    """A pipeline whose target is still empty."""
    return Pipeline(env.connector())
