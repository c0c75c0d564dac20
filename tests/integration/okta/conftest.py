"""Fixtures: one HTTPS Okta emulator per session, a fresh seeded org per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dirconnector.connectors.okta.connector import OktaConnector, OktaSettings
from tests.emulators.okta import OAuthClient, OktaEmulator, OktaState
from tests.integration.scim.conftest import (  # noqa: F401  # the SCIM server fixtures
    scim_process,
    scim_server,
)

TOKEN = "test-ssws-token"
CLIENT_ID = "0oa1serviceapp0000001"
SCOPES = frozenset({"okta.users.read", "okta.groups.read"})


@dataclass
class Org:
    """The seeded org: ids by short name."""

    state: OktaState
    users: dict[str, str]
    groups: dict[str, str]


def seed(state: OktaState) -> Org:
    """One user per Okta status, OKTA_GROUP / APP_GROUP / BUILT_IN groups."""
    statuses = {"alice": "ACTIVE", "bob": "ACTIVE", "carol": "PROVISIONED",
                "dave": "LOCKED_OUT", "erin": "PASSWORD_EXPIRED", "frank": "RECOVERY",
                "gina": "STAGED", "hank": "SUSPENDED", "ivan": "DEPROVISIONED"}
    users = {name: state.add_user(f"{name.title()}@Example.com", name.title(), "Tester",
                                  status=status)
             for name, status in statuses.items()}
    u = users
    groups = {
        "eng": state.add_group("Engineering", members=[u["alice"], u["bob"], u["hank"]]),
        "sales": state.add_group("Sales", members=[u["carol"], u["dave"]]),
        "ad": state.add_group("AD Admins", type="APP_GROUP", members=[u["alice"]]),
        "everyone": state.add_group("Everyone", type="BUILT_IN", members=list(u.values())),
    }
    return Org(state, users, groups)


@pytest.fixture(scope="session")
def emulator() -> Iterator[OktaEmulator]:
    with OktaEmulator() as emu:
        yield emu


@pytest.fixture(scope="session")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A service app key pair: (private PEM file, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("okta-key") / "service-app.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, public


@pytest.fixture
def org(emulator: OktaEmulator, rsa_key: tuple[Path, bytes]) -> Org:
    state = emulator.use(OktaState())
    state.clients[CLIENT_ID] = OAuthClient(CLIENT_ID, rsa_key[1], SCOPES)
    return seed(state)


@pytest.fixture
def make(emulator: OktaEmulator) -> Callable[..., OktaConnector]:
    """Build a connector against the emulator; keyword options override the defaults."""

    def build(**options: Any) -> OktaConnector:
        # Tests poll back to back: no pause between feed polls unless a test asks.
        data: dict[str, Any] = {"type": "okta", "org_url": emulator.url,
                                "ca_file": str(emulator.ca_file), "feed_poll_interval": "0s"}
        if "client_id" not in options:
            data["token"] = TOKEN
        data.update(options)
        hooks = {k: data.pop(k) for k in ("clock", "sleep") if k in data}
        return OktaConnector(OktaSettings.model_validate(data), **hooks)

    return build
