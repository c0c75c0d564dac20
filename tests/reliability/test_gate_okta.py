"""Complete-read gate, Okta: a rate-limit window that never resets mid-read changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dirconnector.connectors.okta.connector import OktaConnector
from tests.integration.okta.conftest import (  # noqa: F401  # fixtures
    Org,
    emulator,
    make,
    org,
    rsa_key,
)

from .conftest import MakeRig
from .gate import assert_broken_read_changes_nothing

pytestmark = pytest.mark.integration


def test_rate_limit_mid_read_revokes_nobody(make_rig_for: MakeRig, org: Org,  # noqa: F811
                                            make: Callable[..., OktaConnector]) -> None:  # noqa: F811
    """The 4th request of a read meets a 429 that outlasts the wait: exit 1, no change."""

    def break_read() -> None:
        org.state.rate.limit, org.state.rate.window = 3, 60
        org.state.rate.used = org.state.rate.reset_at = 0

    error = assert_broken_read_changes_nothing(
        make_rig_for("scim"),
        lambda: make(page_size=2, rate_limit_reserve=0.0, rate_limit_max_wait=0.1), break_read)
    assert "429" in error
