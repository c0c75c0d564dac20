"""Complete-read gate, Entra ID (Graph emulator): a read that cannot finish changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dirconnector.connectors.azure.connector import AzureConnector
from tests.emulators.graph import GraphEmulator
from tests.integration.azure.conftest import (  # noqa: F401  # fixtures
    emulator,
    make_connector,
    tenant,
)

from .conftest import MakeRig
from .gate import assert_broken_read_changes_nothing

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("status", [429, 503])
def test_endless_throttling_revokes_nobody(make_rig_for: MakeRig, tenant: object,  # noqa: F811
                                           make_connector: Callable[..., AzureConnector],  # noqa: F811
                                           emulator: GraphEmulator, status: int) -> None:  # noqa: F811
    """Graph answering 429/503 past the retry bound: the sync fails, the server is untouched."""
    error = assert_broken_read_changes_nothing(
        make_rig_for("scim"), lambda: make_connector(page_size=2),
        lambda: emulator.throttle(float("inf"), retry_after="0.01", status=status))
    assert str(status) in error
