"""Settings of the bitwarden target: URLs per cloud, client id and secret checks."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dirconnector.targets.bitwarden.api import endpoints
from dirconnector.targets.bitwarden.target import BitwardenSettings, BitwardenTarget

CLIENT = "organization.5c1b1e0a-3f7d-4a53-9d1e-6d2b8f0a1c22"


def settings(**options: Any) -> BitwardenSettings:
    base: dict[str, Any] = {"type": "bitwarden", "client_id": CLIENT, "client_secret": "s3cr3t"}
    return BitwardenSettings.model_validate({**base, **options})


@pytest.mark.parametrize(("server", "api", "identity"), [
    ("https://vault.bitwarden.com", "https://api.bitwarden.com",
     "https://identity.bitwarden.com"),
    ("https://vault.bitwarden.eu/", "https://api.bitwarden.eu", "https://identity.bitwarden.eu"),
    ("https://vault.example.com", "https://vault.example.com/api",
     "https://vault.example.com/identity"),
    ("https://example.com/bitwarden", "https://example.com/bitwarden/api",
     "https://example.com/bitwarden/identity"),
])
def test_endpoints_per_installation(server: str, api: str, identity: str) -> None:
    """US and EU clouds use their api/identity hosts; self-hosted uses /api and /identity."""
    assert endpoints(server, None, None) == (api, identity)


def test_explicit_urls_win() -> None:
    """api_url and identity_url override the derived endpoints."""
    assert endpoints("https://vault.example.com", "https://a.example.com/",
                     "https://i.example.com") == ("https://a.example.com", "https://i.example.com")


def test_defaults_are_the_safe_ones() -> None:
    """Defaults: US cloud, no invitation emails, automatic batching."""
    s = settings()
    assert s.server_url == "https://vault.bitwarden.com"
    assert s.invite_users is False and s.large_import == "auto"


def test_client_id_must_be_an_organization_key() -> None:
    """A user API key (user.<uuid>) is refused with where to find the right one."""
    with pytest.raises(ValidationError, match=r"organization\.<uuid>"):
        settings(client_id="user.5c1b1e0a-3f7d-4a53-9d1e-6d2b8f0a1c22")


def test_secret_required_and_never_in_repr() -> None:
    """A missing secret is an error; the secret never appears in reprs."""
    with pytest.raises(ValidationError, match="client_secret: required"):
        BitwardenSettings.model_validate({"type": "bitwarden", "client_id": CLIENT})
    target = BitwardenTarget(settings())
    assert "s3cr3t" not in repr(target) and "s3cr3t" not in repr(target.settings)
    assert "s3cr3t" not in repr(target.api)


def test_secret_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """client_secret_env reads the secret from the named variable."""
    monkeypatch.setenv("BW_CLIENTSECRET", "from-env")
    s = BitwardenSettings.model_validate({"type": "bitwarden", "client_id": CLIENT,
                                          "client_secret_env": "BW_CLIENTSECRET"})
    assert s.client_secret is not None and s.client_secret.get_secret_value() == "from-env"


def test_plain_http_only_on_loopback() -> None:
    """http:// to a remote host is refused (the key would travel in clear)."""
    with pytest.raises(ValidationError, match="use https"):
        settings(server_url="http://vault.example.com")
    assert settings(server_url="http://127.0.0.1:8080").server_url == "http://127.0.0.1:8080"


def test_large_import_values() -> None:
    """large_import takes "auto", true or false, nothing else."""
    assert settings(large_import=True).large_import is True
    with pytest.raises(ValidationError):
        settings(large_import="sometimes")
