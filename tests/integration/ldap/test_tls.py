"""TLS: ldaps:// and StartTLS against the script's own CA; a wrong CA is one clear error."""

from __future__ import annotations

import pytest

from dirconnector.connectors.ldap.connector import LdapConnector
from dirconnector.errors import SourceError
from dirconnector.state_space import ConnectorState

from .conftest import MakeSettings

pytestmark = pytest.mark.integration


def test_ldaps_with_ca_file(make_settings: MakeSettings, slapd: dict[str, str]) -> None:
    """ldaps:// verifies the server against ca_file and reads."""
    settings = make_settings(url=slapd["SLAPD_LDAPS_URL"], ca_file=slapd["SLAPD_CA_FILE"],
                             group_object_class="posixGroup")
    snap = LdapConnector(settings).fetch(ConnectorState())
    assert snap.info["url"].startswith("ldaps://") and snap.users


def test_start_tls_with_ca_file(make_settings: MakeSettings, slapd: dict[str, str]) -> None:
    """StartTLS upgrades ldap:// before the bind and reads."""
    settings = make_settings(start_tls=True, ca_file=slapd["SLAPD_CA_FILE"],
                             group_object_class="posixGroup")
    assert LdapConnector(settings).fetch(ConnectorState()).users


@pytest.mark.parametrize("mode", ["ldaps", "start_tls"])
def test_wrong_ca_is_one_clear_error(make_settings: MakeSettings, slapd: dict[str, str],
                                     mode: str) -> None:
    """A certificate from another CA fails with one line that says so and names ca_file."""
    url = slapd["SLAPD_LDAPS_URL"] if mode == "ldaps" else slapd["SLAPD_URL"]
    settings = make_settings(url=url, start_tls=mode == "start_tls",
                             ca_file=slapd["SLAPD_OTHER_CA_FILE"])
    with pytest.raises(SourceError) as info:
        LdapConnector(settings).fetch(ConnectorState())
    text = str(info.value)
    assert "certificate" in text and "ca_file" in text and "\n" not in text
    report = LdapConnector(settings).check()
    assert not report.ok and "certificate" in report.items[0].detail


def test_verify_tls_false_accepts_unknown_ca(make_settings: MakeSettings,
                                             slapd: dict[str, str]) -> None:
    """verify_tls = false connects despite an unknown CA (for labs only)."""
    settings = make_settings(url=slapd["SLAPD_LDAPS_URL"], ca_file=slapd["SLAPD_OTHER_CA_FILE"],
                             verify_tls=False, group_object_class="posixGroup")
    assert LdapConnector(settings).fetch(ConnectorState()).users
