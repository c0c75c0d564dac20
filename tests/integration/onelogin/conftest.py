"""Fixtures: a seeded OneLogin account served over HTTPS (trustme CA) on 127.0.0.1."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from dirconnector.connectors.onelogin.connector import OneLoginConnector, OneLoginSettings
from dirconnector.http import RetryPolicy
from tests.emulators.onelogin import Account, OneLoginEmulator
from tests.emulators.onelogin.seed import (
    CLIENT_ID,
    CLIENT_SECRET,
    FAST_RETRY,
    ConnectorFactory,
    Seed,
    seed,
)
from tests.integration.scim.conftest import (  # noqa: F401  # the SCIM server fixtures
    scim_process,
    scim_server,
)


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    path = tmp_path_factory.mktemp("onelogin-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ctx, path


@pytest.fixture
def account() -> Account:
    return Account()


@pytest.fixture
def ids(account: Account) -> Seed:
    return seed(account)


@pytest.fixture
def emulator(account: Account, ids: Seed, tls: tuple[ssl.SSLContext, Path],
             ) -> Iterator[OneLoginEmulator]:
    with OneLoginEmulator(account, tls[0]) as emu:
        yield emu


@pytest.fixture
def make_connector(emulator: OneLoginEmulator, tls: tuple[ssl.SSLContext, Path],
                   ) -> ConnectorFactory:
    def make(*, retry: RetryPolicy = FAST_RETRY, **options: Any) -> OneLoginConnector:
        data: dict[str, Any] = {"type": "onelogin", "base_url": emulator.url,
                                "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                "ca_file": str(tls[1]), "page_size": 10,
                                "feed_poll_interval": "0s"}
        data.update(options)
        hooks = {k: data.pop(k) for k in ("clock", "sleep", "wall_clock") if k in data}
        return OneLoginConnector(OneLoginSettings.model_validate(data), retry=retry, **hooks)
    return make


