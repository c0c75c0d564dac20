"""Settings validation: hosts, secrets, status lists and filters, each error naming its field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dirconnector.connectors.onelogin.connector import OneLoginConnector, OneLoginSettings

SECRET = "top-secret-value-123"


def _settings(**options: Any) -> OneLoginSettings:
    data: dict[str, Any] = {"type": "onelogin", "subdomain": "acme", "client_id": "cid",
                            "client_secret": SECRET}
    data.update(options)
    return OneLoginSettings.model_validate({k: v for k, v in data.items() if v is not None})


def _error(**options: Any) -> str:
    with pytest.raises(ValidationError) as err:
        _settings(**options)
    return str(err.value)


@pytest.mark.parametrize(("options", "url"), [
    ({"subdomain": "acme"}, "https://acme.onelogin.com"),
    ({"subdomain": "https://Acme.onelogin.com/"}, "https://acme.onelogin.com"),
    ({"subdomain": None, "region": "eu"}, "https://api.eu.onelogin.com"),
    ({"subdomain": None, "region": "us"}, "https://api.us.onelogin.com"),
    ({"subdomain": None, "base_url": "https://proxy.example.com:8443/"},
     "https://proxy.example.com:8443"),
    ({"subdomain": None, "base_url": "http://127.0.0.1:9000"}, "http://127.0.0.1:9000"),
])
def test_api_host(options: dict[str, Any], url: str) -> None:
    """subdomain, region or base_url each give the API origin."""
    assert _settings(**options).api_url == url


def test_exactly_one_host_option() -> None:
    """Two host options, or none, is an error that names them."""
    assert "exactly one of subdomain, region or base_url (got subdomain, region)" in _error(
        region="us")
    assert "exactly one of subdomain, region or base_url" in _error(subdomain=None)


def test_plain_http_only_on_loopback() -> None:
    """http:// to a remote host is refused (the secret would travel in clear)."""
    assert "plain http" in _error(subdomain=None, base_url="http://onelogin.example.com")


def test_bad_subdomain() -> None:
    """A subdomain that is not a DNS label is refused with an example."""
    assert "not a OneLogin subdomain" in _error(subdomain="acme corp")


def test_secret_required_and_never_shown() -> None:
    """client_secret is required; the value never appears in reprs."""
    assert "client_secret: required" in _error(client_secret=None)
    settings = _settings()
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    assert SECRET not in repr(OneLoginConnector(settings))


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """client_secret_env reads the secret from the named variable."""
    monkeypatch.setenv("OL_SECRET", "from-env")
    s = _settings(client_secret=None, client_secret_env="OL_SECRET")
    assert s.client_secret is not None and s.client_secret.get_secret_value() == "from-env"


def test_status_lists_must_not_overlap() -> None:
    """A status in two lists, or an unknown status, is an error naming the list."""
    assert "skip_statuses: status 2 is also in inactive_statuses" in _error(skip_statuses=[0, 2])
    assert "active_statuses: 6 is not a OneLogin user status" in _error(active_statuses=[1, 6])


def test_filters_are_checked() -> None:
    """Malformed include/exclude and unknown native query keys name the field."""
    assert "user_filter" in _error(user_filter="only:a@x.com")
    assert "user_filter: 'limit' is not a query parameter" in _error(user_filter="| limit=5")
    assert "group_filter: 'email'" in _error(group_filter="| email=x")
    assert "take no query" in _error(groups_from="groups", group_filter="| name=x")
    ok = _settings(user_filter="include:a@x.com | directory_id=3&custom_attributes.dept=IT")
    assert ok.user_filter is not None


def test_unknown_key_rejected() -> None:
    """A misspelt option is rejected (extra keys are forbidden)."""
    assert "groups_form" in _error(groups_form="roles")


def test_email_options() -> None:
    """email_suffix loses a leading @; email_attribute must be a field or custom attribute."""
    assert _settings(email_suffix="@Corp.Example.com").email_suffix == "corp.example.com"
    assert "email_attribute" in _error(email_attribute="email; drop")
