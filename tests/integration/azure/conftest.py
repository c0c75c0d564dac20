"""Fixtures: a Graph emulator per test with a small tenant, and connectors pointed at it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from dirconnector.connectors.azure.connector import AzureConnector, AzureSettings
from dirconnector.diff import Policy, diff
from dirconnector.outcome import Outcome
from dirconnector.plan import Plan
from dirconnector.state_space import ConnectorState
from dirconnector.testing import FakeTarget, managed_refs
from tests.emulators.graph import GraphEmulator
from tests.integration.scim.conftest import (  # noqa: F401  # the SCIM server fixtures
    scim_process,
    scim_server,
)

CLIENT_ID = "00001111-aaaa-2222-bbbb-3333cccc4444"
SECRET = "Xy9~test-secret-value-never-logged"
READ_ROLES = {"User.Read.All", "GroupMember.Read.All"}


@dataclass
class Tenant:
    """Object ids of the seeded directory."""

    alice: str
    bob: str
    carol: str          # no mail: email falls back to the userPrincipalName
    dave: str
    guest: str
    engineering: str    # alice + nested Platform
    platform: str       # carol
    sales: str          # bob, dave


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[GraphEmulator]:
    with GraphEmulator(tmp_path) as em:
        em.register_app(CLIENT_ID, secret=SECRET, roles=set(READ_ROLES))
        yield em


@pytest.fixture
def tenant(emulator: GraphEmulator) -> Tenant:
    d = emulator.directory
    alice = d.add_user("Alice@Contoso.com", "Alice Able", given_name="Alice", surname="Able")
    bob = d.add_user("bob@contoso.com", "Bob Baker", given_name="Bob", surname="Baker")
    carol = d.add_user(None, "Carol Cole", upn="carol@contoso.onmicrosoft.com")
    dave = d.add_user("dave@contoso.com", "Dave Dunn")
    guest = d.add_guest("gina@fabrikam.com", "Gina Guest")
    platform = d.add_group("Platform", [carol])
    engineering = d.add_group("Engineering", [alice, platform, guest])
    sales = d.add_group("Sales", [bob, dave])
    return Tenant(alice, bob, carol, dave, guest, engineering, platform, sales)


@pytest.fixture
def make_connector(emulator: GraphEmulator) -> Callable[..., AzureConnector]:
    def make(**options: Any) -> AzureConnector:
        base: dict[str, Any] = {
            "type": "azure", "tenant_id": emulator.tenant_id, "client_id": CLIENT_ID,
            "client_secret": SECRET, "authority_host": emulator.origin,
            "graph_url": emulator.origin, "ca_file": str(emulator.ca_file)}
        if "certificate_file" in options:
            base.pop("client_secret")
        base.update(options)
        return AzureConnector(AzureSettings.model_validate(base))
    return make


@dataclass
class Pipeline:
    """Source -> diff -> FakeTarget, the way sync.run_once wires it."""

    connector: AzureConnector
    target: FakeTarget
    state: ConnectorState
    policy: Policy

    def plan(self) -> Plan:
        snap = self.connector.fetch(self.state)
        return diff(snap, self.target.snapshot(), self.policy, managed_refs(self.target))

    def run(self) -> Plan:
        """Plan, apply, and commit connector state (a good run)."""
        plan = self.plan()
        outcomes: list[Outcome] = []
        self.target.apply(plan, outcomes.append)
        assert all(o.status == "ok" for o in outcomes), outcomes
        self.state.commit()
        return plan


@pytest.fixture
def pipeline(make_connector: Callable[..., AzureConnector], tenant: Tenant) -> Pipeline:
    return Pipeline(make_connector(), FakeTarget(), ConnectorState(), Policy(remove_missing=True))


def self_signed(tmp_path: Path, password: bytes | None = None) -> tuple[Path, bytes]:
    """A key + certificate PEM file, as uploaded to an app registration; (path, cert PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dirconnector-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    path = tmp_path / "app-cert.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8, enc) + cert_pem)
    return path, cert_pem
