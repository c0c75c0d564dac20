"""Settings are validated before any connection; errors name the TOML path."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dirconnector.connectors.ldap.connector import LdapSettings
from dirconnector.errors import ConfigError
from dirconnector.settings import format_errors, load


def profile(**source: object) -> dict[str, object]:
    return {"source": {"type": "ldap", "url": "ldap://127.0.0.1:1", **source},
            "target": {"type": "file", "users": __file__}}


def source(**fields: object) -> LdapSettings:
    """Validate a [source] table the way load() does, without needing a target plugin."""
    try:
        return LdapSettings.model_validate(profile(**fields)["source"])
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, LdapSettings, set(), prefix="source")) from exc


def error(**source: object) -> str:
    with pytest.raises(ConfigError) as info:
        load(data=profile(**source))
    return str(info.value)


def test_user_filter_typo_names_the_field() -> None:
    """A syntax error in user_filter is a ConfigError naming source.user_filter."""
    text = error(user_filter="(&(objectClass=person)(uid=a)")
    assert text.startswith("source.user_filter:") and "LDAP filter" in text


@pytest.mark.parametrize("field", ["group_filter", "disabled_filter"])
def test_other_filters_are_validated(field: str) -> None:
    """group_filter and disabled_filter are checked the same way."""
    assert error(**{field: "(cn=a(b)"}).startswith(f"source.{field}:")


def test_good_settings_load_without_a_server() -> None:
    """A valid profile loads although nothing listens on the URL; filters gain parentheses."""
    src = source(user_filter="uid=a*", url=["ldap://a", "ldaps://b:1636"])
    assert src.user_filter == "(uid=a*)"
    assert src.url == ["ldap://a", "ldaps://b:1636"]


@pytest.mark.parametrize(("source", "needle"), [
    ({"url": "http://x"}, "source.url"),
    ({"url": ["ldaps://x"], "start_tls": True}, "start_tls"),
    ({"bind_dn": "cn=x"}, "password"),
    ({"email_suffix": "example.com"}, "email_suffix"),
    ({"base_dn": "not a dn"}, "source.base_dn"),
    ({"backend": "openldap"}, "source.backend"),
    ({"full_read_interval": "soon"}, "source.full_read_interval"),
    ({"page_sise": 10}, "did you mean 'page_size'"),
])
def test_bad_settings(source: dict[str, object], needle: str) -> None:
    """Each mistake is reported with the field it concerns."""
    assert needle in error(**source)


def test_password_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """The password (here from password_env) is a SecretStr and absent from reprs."""
    monkeypatch.setenv("LDAP_PW", "s3cret-value")
    src = source(bind_dn="cn=x", password_env="LDAP_PW")
    assert "s3cret-value" not in repr(src) and "s3cret-value" not in str(src.model_dump())
