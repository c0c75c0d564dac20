"""[state] for PostgreSQL: secrets given the usual three ways, checked, and never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirconnector import settings
from dirconnector.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "directory.json"
URL = "postgresql://dc@db.example.com:5432/dirconnector"


def load(**state: object) -> settings.Profile:
    return settings.load(data={"source": {"type": "file", "users": str(EXAMPLES)},
                               "target": {"type": "scim", "url": "http://127.0.0.1:9",
                                          "token": "t0ken-value"}, "state": state})


def test_url_and_password_from_files_are_secrets_redacted_everywhere(tmp_path):
    """url_file and password_file are read; config show and the log filter hide both."""
    (tmp_path / "url").write_text(URL + "\n")
    (tmp_path / "pw").write_text("s3cret-pg-password\n")
    profile = load(url_file=str(tmp_path / "url"), password_file=str(tmp_path / "pw"),
                   sslmode="verify-full")
    state = profile.settings.state
    assert state.url is not None and state.url.get_secret_value() == URL
    assert state.password is not None
    shown = str(profile.redacted())
    assert URL not in shown and "s3cret-pg-password" not in shown
    assert {URL, "s3cret-pg-password"} <= settings.secret_values(profile)


def test_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("PG_PW_UNIT", "from-the-env-123")
    state = load(url=URL, password_env="PG_PW_UNIT").settings.state
    assert state.password is not None
    assert state.password.get_secret_value() == "from-the-env-123"


@pytest.mark.parametrize(("state", "message"), [
    ({"url": "mysql://db/x"}, "not a postgresql:// URL"),
    ({"password": "pw-without-a-url"}, "apply to PostgreSQL: set url too"),
    ({"url": URL, "password": "pw-one-234", "password_env": "X"}, "both set"),
    ({"url": URL, "sslmode": "sometimes"}, "sslmode"),
    ({"url": URL, "lock_lease": "1s"}, "at least 3s"),
])
def test_bad_state_settings_name_the_key(state, message):
    with pytest.raises(ConfigError, match=message):
        load(**state)


def test_sqlite_stays_the_default():
    state = load().settings.state
    assert state.url is None and state.path.name == "state.db"
