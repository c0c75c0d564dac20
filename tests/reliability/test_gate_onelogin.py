"""Complete-read gate, OneLogin: a users page failing past the retry bound changes nothing."""

from __future__ import annotations

import pytest

from tests.emulators.onelogin import Account
from tests.emulators.onelogin.seed import ConnectorFactory
from tests.integration.onelogin.conftest import (  # noqa: F401  # fixtures
    account,
    emulator,
    ids,
    make_connector,
    tls,
)

from .conftest import MakeRig
from .gate import assert_broken_read_changes_nothing

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("path", "status"), [("/api/2/users", 503), ("/api/2/users", 500),
                                              ("/api/1/groups", 502)])
def test_failing_middle_page_revokes_nobody(make_rig_for: MakeRig,
                                            make_connector: ConnectorFactory,  # noqa: F811
                                            account: Account, path: str,  # noqa: F811
                                            status: int) -> None:
    """OneLogin page 2 failing for good: the sync fails (exit 1), the server is untouched."""
    groups_from = "groups" if "groups" in path else "roles"
    error = assert_broken_read_changes_nothing(
        make_rig_for("scim"), lambda: make_connector(groups_from=groups_from, page_size=3),
        lambda: account.fail(path, page=2, times=1000, status=status))
    assert "page 2" in error
