"""Complete-read gate, Google: members.list failing after users and groups read changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.google.conftest import (  # noqa: F401  # fixtures
    env,
    rsa_key,
    tls_ca,
)

from .conftest import MakeRig
from .gate import assert_broken_read_changes_nothing

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("status", "reason"), [(403, "rateLimitExceeded"), (503, "backendError"),
                                                (404, "notFound")])
def test_failing_member_pages_revoke_nobody(make_rig_for: MakeRig, env: Any,  # noqa: F811
                                            status: int, reason: str) -> None:
    """members.list failing for good (rate limit, 503, a listed group gone): exit 1, no change."""
    error = assert_broken_read_changes_nothing(
        make_rig_for("scim"), env.connector,
        lambda: env.directory.fail("members.list", status, reason, times=10_000))
    assert "members.list" in error
