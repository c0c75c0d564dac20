"""Settings: file + environment, secrets three ways, errors naming the TOML path."""

import os
import stat
from pathlib import Path

import pytest

from dirconnector import settings
from dirconnector.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "directory.json"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


BASE = f"""
[source]
type = "file"
users = "{EXAMPLES}"
[target]
type = "scim"
url = "http://127.0.0.1:9"
token = "s3cr3t-token-value"
"""


def test_valid_file_loads_with_safe_defaults(tmp_path):
    """A minimal file loads; policy defaults are the safe ones."""
    profile = settings.load(write(tmp_path, BASE))
    assert profile.source.type == "file" and profile.target.type == "scim"
    sync = profile.settings.sync
    assert (sync.remove_missing, sync.manage, sync.max_revocations) == (False, "linked", 25)


def test_unknown_key_names_path_and_suggests(tmp_path):
    """A typo is an error naming the TOML path with a did-you-mean hint."""
    with pytest.raises(ConfigError) as exc:
        settings.load(write(tmp_path, BASE + "[sync]\nremove_missin = true\n"))
    assert "sync.remove_missin: unknown key; did you mean 'remove_missing'?" in str(exc.value)


def test_unknown_key_in_plugin_table(tmp_path):
    """Unknown keys inside [source] are caught by the connector's own model."""
    with pytest.raises(ConfigError) as exc:
        settings.load(write(tmp_path, BASE.replace('type = "file"', 'type = "file"\nuser = "x"')))
    assert "source.user: unknown key; did you mean 'users'?" in str(exc.value)


def test_wrong_type_names_field_and_value(tmp_path):
    """A string where a number belongs names the field and the bad value."""
    with pytest.raises(ConfigError) as exc:
        settings.load(write(tmp_path, BASE + "[sync]\nmax_revocations = \"lots\"\n"))
    assert "sync.max_revocations" in str(exc.value) and "'lots'" in str(exc.value)


def test_malformed_toml_is_one_line(tmp_path):
    """Broken TOML names the file and the position."""
    with pytest.raises(ConfigError) as exc:
        settings.load(write(tmp_path, "[source\ntype='file'"))
    assert "not valid TOML" in str(exc.value) and "line 1" in str(exc.value)


def test_unknown_source_type_suggests(tmp_path):
    """A misspelt connector type suggests the installed one."""
    with pytest.raises(ConfigError) as exc:
        settings.load(write(tmp_path, BASE.replace('type = "file"', 'type = "fil"')))
    assert exc.value.hint == "did you mean 'file'?"


def test_environment_overrides_file(tmp_path, monkeypatch):
    """DIRCONNECTOR_SYNC__MAX_REVOCATIONS overrides [sync] max_revocations."""
    monkeypatch.setenv("DIRCONNECTOR_SYNC__MAX_REVOCATIONS", "7")
    monkeypatch.setenv("DIRCONNECTOR_TARGET__URL", "http://127.0.0.1:10")
    profile = settings.load(write(tmp_path, BASE))
    assert profile.settings.sync.max_revocations == 7
    assert profile.target.url == "http://127.0.0.1:10"


def test_environment_tables_lists_and_other_variables():
    """Nested keys, JSON lists, case folding; the tool's own variables are not settings."""
    env = {"DIRCONNECTOR_SOURCE__URL": '["ldaps://a:636", "ldaps://b:636"]',
           "dirconnector_sync__remove_missing": "true", "DIRCONNECTOR_CONFIG": "/etc/dc.toml",
           "DIRCONNECTOR_MIN_INTERVAL_SECONDS": "1", "DIRCONNECTOR_TARGET__NAME": "[not json",
           "OTHER_SYNC__X": "1"}
    assert settings.environment(env) == {
        "source": {"url": ["ldaps://a:636", "ldaps://b:636"]},
        "sync": {"remove_missing": "true"}, "target": {"name": "[not json"}}


def test_environment_overrides_nested_table_key_by_key(tmp_path, monkeypatch):
    monkeypatch.setenv("DIRCONNECTOR_SYNC__REMOVE_MISSING", "true")
    profile = settings.load(write(tmp_path, BASE + "\n[sync]\nmax_revocations = 3\n"))
    assert profile.settings.sync.remove_missing is True
    assert profile.settings.sync.max_revocations == 3


def test_secret_from_env_and_file(tmp_path, monkeypatch):
    """token_env and token_file both fill the token; the value is a SecretStr."""
    monkeypatch.setenv("MY_TOKEN", "from-env-123")
    p = settings.load(write(tmp_path, BASE.replace('token = "s3cr3t-token-value"',
                                                    'token_env = "MY_TOKEN"')))
    assert p.target.token.get_secret_value() == "from-env-123"
    secret = tmp_path / "tok"
    secret.write_text("from-file-456\n")
    p = settings.load(write(tmp_path, BASE.replace('token = "s3cr3t-token-value"',
                                                    f'token_file = "{secret}"')))
    assert p.target.token.get_secret_value() == "from-file-456"
    assert "from-file-456" not in repr(p)


def test_missing_secret_env_and_unreadable_file(tmp_path, monkeypatch):
    """A named env var that is unset, or a file that is missing, is a clear error."""
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"target.token_env: environment variable NOPE_TOKEN"):
        settings.load(write(tmp_path, BASE.replace('token = "s3cr3t-token-value"',
                                                   'token_env = "NOPE_TOKEN"')))
    with pytest.raises(ConfigError, match=r"target.token_file: cannot read /nonexistent/t"):
        settings.load(write(tmp_path, BASE.replace('token = "s3cr3t-token-value"',
                                                   'token_file = "/nonexistent/t"')))


def test_redacted_view_hides_secrets(tmp_path):
    """config show's data never holds the secret value."""
    profile = settings.load(write(tmp_path, BASE))
    shown = repr(profile.redacted())
    assert "s3cr3t-token-value" not in shown and "********" in shown


def test_world_readable_file_with_inline_secret_warns(tmp_path):
    """A config holding a secret inline and readable by others produces a warning."""
    path = write(tmp_path, BASE)
    path.chmod(0o644)
    profile = settings.load(path)
    assert profile.warnings and "target.token" in profile.warnings[0]
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert not settings.load(path).warnings


def test_config_path_resolution(monkeypatch):
    """--config wins, then $DIRCONNECTOR_CONFIG, then ./dirconnector.toml."""
    monkeypatch.setenv("DIRCONNECTOR_CONFIG", "/etc/dc.toml")
    assert settings.config_path("x.toml") == Path("x.toml")
    assert settings.config_path(None) == Path("/etc/dc.toml")
    monkeypatch.delenv("DIRCONNECTOR_CONFIG")
    assert settings.config_path(None) == Path("dirconnector.toml")
    assert os.sep not in str(settings.config_path(None))


def test_durations_parse_one_way_everywhere():
    """One parser for every duration option: compound units, bare seconds, clear errors."""
    from datetime import timedelta

    assert settings.parse_duration("1h30m") == timedelta(minutes=90)
    assert settings.parse_duration("90") == timedelta(seconds=90)
    assert settings.parse_duration("1d") == timedelta(days=1)
    for bad in ("soon", "1y", "", "5m later"):
        with pytest.raises(ValueError, match="is not a duration"):
            settings.parse_duration(bad)


def test_config_example_is_valid(monkeypatch):
    """config.example.toml, as shipped, loads with its safe defaults."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    monkeypatch.setenv("SCIM_TOKEN", "example-token")
    profile = settings.load(root / "config.example.toml")
    assert profile.source.type == "file" and profile.target.type == "scim"
    assert profile.settings.sync.remove_missing is False


def test_builtin_plugins_are_the_installed_entry_points():
    """registry.BUILTIN (found without a metadata scan) matches pyproject's entry points."""
    from dirconnector import registry

    for group, names in registry.BUILTIN.items():
        installed = {n: p.value for n, p in registry.available(group).items()
                     if p.distribution == "dirconnector"}
        assert installed == names
        for name in names:
            assert registry.find(group, name).load().__name__ == names[name].rsplit(":")[1]


def test_inline_notify_and_status_secrets_warn(tmp_path):
    """A chat webhook URL or the status token written inline counts as an inline secret too."""
    text = BASE.replace('token = "s3cr3t-token-value"', 'token_env = "HOME"') + """
[daemon]
status_token = "status-secret-1"
[[notify.slack]]
url = "https://hooks.example.invalid/T000/B000/XXXX"
"""
    path = write(tmp_path, text)
    path.chmod(0o644)
    warning = " ".join(settings.load(path).warnings)
    assert "notify.slack[0].url" in warning and "daemon.status_token" in warning
    assert "target.token" not in warning and "status-secret-1" not in warning
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert not settings.load(path).warnings


def test_inline_state_password_warns_but_a_bare_url_does_not(tmp_path):
    """[state] password, or a password inside the PostgreSQL URL, is an inline secret; a URL
    naming only the host and user is not."""
    text = BASE.replace('token = "s3cr3t-token-value"', 'token_env = "HOME"')
    for state, named in (('url = "postgresql://dc:pw-in-url-1@db.example/dc"', "state.url"),
                         ('url = "postgresql://dc@db.example/dc"\npassword = "pw-2"',
                          "state.password"),
                         ('url = "postgresql://dc@db.example/dc"', None)):
        path = write(tmp_path, text + "[state]\n" + state + "\n")
        path.chmod(0o644)
        warnings = settings.load(path).warnings
        assert (named in " ".join(warnings)) if named else not warnings, (state, warnings)
