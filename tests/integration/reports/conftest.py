"""The report tests run the CLI against the session's scim2-server."""

from __future__ import annotations

from tests.integration.cli.conftest import env as env  # a shared fixture
from tests.integration.scim.conftest import scim_process as scim_process  # a shared fixture
