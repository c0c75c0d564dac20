"""Failures the azure connector must survive or report in one clear line."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from dirconnector.connectors.azure.connector import AzureConnector, AzureSettings
from dirconnector.errors import ConfigError, IncompleteRead, SourceError
from dirconnector.state_space import ConnectorState
from tests.emulators.graph import GraphEmulator

from .conftest import CLIENT_ID, SECRET, Tenant, self_signed

pytestmark = pytest.mark.integration


def test_throttle_storm_is_survived(make_connector: Callable[..., AzureConnector],
                                    emulator: GraphEmulator, tenant: Tenant) -> None:
    """Four 429s with Retry-After "0.05" are waited out and the read completes."""
    conn = make_connector()
    conn.tokens.token()
    emulator.throttle(4, retry_after="0.05")
    snap = conn.fetch(ConnectorState())
    assert len(snap.users) == 4
    assert sum(1 for s in emulator.graph_calls() if s.status == 429) == 4


@pytest.mark.parametrize("status", [503, 504])
def test_unavailable_is_retried(make_connector: Callable[..., AzureConnector],
                                emulator: GraphEmulator, tenant: Tenant, status: int) -> None:
    """503 and 504 with a fractional Retry-After are retried like 429."""
    emulator.throttle(2, retry_after="0.01", status=status)
    assert len(make_connector().fetch(ConnectorState()).users) == 4


def test_endless_storm_fails_without_snapshot(make_connector: Callable[..., AzureConnector],
                                              emulator: GraphEmulator, tenant: Tenant) -> None:
    """A storm that never ends raises IncompleteRead naming the request; no state is staged."""
    emulator.throttle(float("inf"), retry_after="0.02")
    state = ConnectorState()
    with pytest.raises(IncompleteRead) as err:
        make_connector().fetch(state)
    msg = str(err.value)
    assert "\n" not in msg and "429" in msg and "nothing is planned" in msg
    assert state.snapshot() == {}


def test_storm_during_delta_keeps_previous_state(make_connector: Callable[..., AzureConnector],
                                                 emulator: GraphEmulator, tenant: Tenant,
                                                 ) -> None:
    """A delta read that gives up leaves the stored delta links and cache untouched."""
    conn = make_connector()
    state = ConnectorState()
    conn.fetch(state)
    state.commit()
    before = state.snapshot()
    emulator.directory.disable_user(tenant.bob)
    emulator.throttle(float("inf"), retry_after="0.02")
    with pytest.raises(IncompleteRead):
        conn.fetch(state)
    emulator.throttle(0)
    after_fail = ConnectorState(before)
    snap = conn.fetch(after_fail)
    assert not snap.users[tenant.bob].active      # the change was not skipped


def test_bad_secret_is_one_clear_line(make_connector: Callable[..., AzureConnector],
                                      emulator: GraphEmulator, tenant: Tenant) -> None:
    """A wrong secret names tenant and client id and the AADSTS reason, never the secret."""
    wrong = "definitely-not-the-secret"
    with pytest.raises(SourceError) as err:
        make_connector(client_secret=wrong).fetch(ConnectorState())
    msg = str(err.value)
    assert "\n" not in msg
    assert CLIENT_ID in msg and emulator.tenant_id in msg and "AADSTS7000215" in msg
    assert wrong not in msg and SECRET not in msg
    assert "Trace ID" not in msg


def test_missing_permission_names_it(make_connector: Callable[..., AzureConnector],
                                     emulator: GraphEmulator, tenant: Tenant) -> None:
    """Without GroupMember.Read.All the read fails with one line naming that permission."""
    emulator.issuer.apps[CLIENT_ID].roles = {"User.Read.All"}
    with pytest.raises(SourceError) as err:
        make_connector().fetch(ConnectorState())
    msg = str(err.value)
    assert "\n" not in msg
    assert "GroupMember.Read.All" in msg and "Authorization_RequestDenied" in msg
    assert "admin consent" in err.value.hint


def test_check_reports_missing_permission(make_connector: Callable[..., AzureConnector],
                                          emulator: GraphEmulator, tenant: Tenant) -> None:
    """check() does not raise: it reports the token ok and users unreadable (User.Read.All)."""
    emulator.issuer.apps[CLIENT_ID].roles = {"GroupMember.Read.All"}
    report = make_connector().check()
    assert not report.ok
    assert report.items[0].ok
    assert "User.Read.All" in report.items[-1].detail


def test_check_passes_and_counts(make_connector: Callable[..., AzureConnector],
                                 tenant: Tenant) -> None:
    """check() on a healthy tenant passes and counts users and groups."""
    report = make_connector().check()
    assert report.ok
    assert report.counts["users"] == 4 and report.counts["groups"] == 3


def test_unknown_tenant_is_one_line(make_connector: Callable[..., AzureConnector],
                                    tenant: Tenant) -> None:
    """A tenant id the authority does not know fails discovery with one line naming it."""
    with pytest.raises(SourceError) as err:
        make_connector(tenant_id="00000000-0000-0000-0000-000000000000").fetch(ConnectorState())
    assert "00000000-0000-0000-0000-000000000000" in str(err.value)
    assert "\n" not in str(err.value)


def test_untrusted_ca_fails_tls(make_connector: Callable[..., AzureConnector],
                                tenant: Tenant) -> None:
    """Without ca_file the emulator's certificate is refused (TLS is verified, never skipped)."""
    with pytest.raises(SourceError) as err:
        make_connector(ca_file=None).fetch(ConnectorState())
    assert "TLS" in str(err.value)


def test_certificate_credential(make_connector: Callable[..., AzureConnector],
                                emulator: GraphEmulator, tenant: Tenant, tmp_path: Path) -> None:
    """An encrypted PEM key + certificate signs a client assertion the token endpoint accepts."""
    path, cert_pem = self_signed(tmp_path, password=b"pem-pass")
    emulator.register_app("cert-app", certificate_pem=cert_pem, roles={
        "User.Read.All", "GroupMember.Read.All"})
    conn = make_connector(client_id="cert-app", certificate_file=str(path),
                          certificate_password="pem-pass")
    assert len(conn.fetch(ConnectorState()).users) == 4


def test_wrong_certificate_is_rejected(make_connector: Callable[..., AzureConnector],
                                       emulator: GraphEmulator, tenant: Tenant,
                                       tmp_path: Path) -> None:
    """A certificate not uploaded to the app gives one line with AADSTS700027."""
    path, _ = self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    _, other = self_signed(tmp_path / "other")
    emulator.register_app("cert-app", certificate_pem=other, roles={"User.Read.All"})
    with pytest.raises(SourceError) as err:
        make_connector(client_id="cert-app", certificate_file=str(path)).fetch(ConnectorState())
    assert "AADSTS700027" in str(err.value) and "certificate" in str(err.value)


def test_wrong_certificate_password_is_a_config_error(tmp_path: Path) -> None:
    """A wrong certificate_password is reported against the option, before any request."""
    path, _ = self_signed(tmp_path, password=b"right")
    settings = AzureSettings.model_validate({
        "type": "entra", "tenant_id": "t", "client_id": "c", "certificate_file": str(path),
        "certificate_password": "wrong"})
    with pytest.raises(ConfigError, match="certificate_password"):
        AzureConnector(settings)


@pytest.mark.parametrize("options, words", [
    ({}, "exactly one of client_secret"),
    ({"client_secret": "x", "page_size": 1000}, "page_size"),
    ({"client_secret": "x", "graph_url": "http://graph.example"}, "https://"),
    ({"client_secret": "x", "user_filter": "include:a@x.com | startswith(mail,'a')"}, "'|'"),
    ({"client_secret": "x", "full_read_interval": "daily"}, "duration"),
])
def test_settings_are_validated(options: dict[str, object], words: str) -> None:
    """Invalid options are refused by the settings model with a message naming the problem."""
    with pytest.raises(ValueError, match=words.replace("|", r"\|").replace("(", r"\(")):
        AzureSettings.model_validate({"type": "azure", "tenant_id": "t", "client_id": "c",
                                      **options})


def test_secret_is_not_in_repr() -> None:
    """The client secret never appears in the settings' repr or dump."""
    s = AzureSettings.model_validate({"type": "azure", "tenant_id": "t", "client_id": "c",
                                      "client_secret": "s3cr3t-value"})
    assert "s3cr3t-value" not in repr(s) and "s3cr3t-value" not in str(s.model_dump())


def test_paging_link_to_other_host_is_refused(make_connector: Callable[..., AzureConnector],
                                              tenant: Tenant) -> None:
    """A nextLink pointing at another host is not followed (the bearer token stays home)."""
    conn = make_connector()
    with pytest.raises(SourceError, match="another host"):
        conn.graph._next("https://evil.example/v1.0/users?$skiptoken=x")


def test_secret_never_logged(make_connector: Callable[..., AzureConnector],
                             emulator: GraphEmulator, tenant: Tenant,
                             caplog: pytest.LogCaptureFixture) -> None:
    """At DEBUG, neither a good nor a rejected secret appears in any log record."""
    wrong = "wrong-secret-value-1234"
    with caplog.at_level(logging.DEBUG):
        make_connector().fetch(ConnectorState())
        with pytest.raises(SourceError):
            make_connector(client_secret=wrong).fetch(ConnectorState())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records and SECRET not in text and wrong not in text
