"""import-bwdc: every sample bwdc data.json converts to a valid dirconnector profile."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from dirconnector.bwdc.convert import convert
from dirconnector.errors import ConfigError

DATA = Path(__file__).parent / "data"
SAMPLES = sorted(DATA.glob("bwdc-*.json"))
SECRETS = ("Plaintext-Ldap-Secret-1", "Plaintext-Entra-Secret-2", "Plaintext-Google-Key-3",
           "Plaintext-Okta-Token-4", "Plaintext-OneLogin-Secret-5")
EXPECTED_TYPE = {0: "ldap", 1: "azure", 2: "google", 3: "okta", 4: "onelogin"}
FAKE_GOOGLE_KEY = json.dumps({
    "type": "service_account", "client_email": "bwdc@acme.iam.gserviceaccount.com",
    "client_id": "1", "private_key": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n",
    "private_key_id": "k1", "token_uri": "https://oauth2.googleapis.com/token"})


def _secrets_for(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip if the converted profile's connector is not installed; set every secret the
    converted profiles name by environment variable."""
    from dirconnector.registry import CONNECTORS, find

    try:
        find(CONNECTORS, kind).load()
    except ConfigError as exc:
        pytest.skip(f"the {kind} connector is not importable yet: {exc}")
    for name in ("LDAP_BIND_PASSWORD", "ENTRA_CLIENT_SECRET", "OKTA_API_TOKEN",
                 "ONELOGIN_CLIENT_SECRET", "BW_CLIENTSECRET"):
        monkeypatch.setenv(name, "dummy-secret")
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT_JSON", FAKE_GOOGLE_KEY)


def load_sample(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_a_sample_per_directory_type() -> None:
    """The samples cover directory types 0 to 4."""
    assert {load_sample(p)["directoryType"] for p in SAMPLES} == set(EXPECTED_TYPE)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_converts_to_toml_without_secrets(path: Path) -> None:
    """Each sample gives parseable TOML of the right source type, secrets only as *_env."""
    data = load_sample(path)
    text, unmapped = convert(data)
    config = tomllib.loads(text)
    assert config["source"]["type"] == EXPECTED_TYPE[data["directoryType"]]
    assert config["target"]["type"] == "bitwarden"
    assert config["target"]["client_id"] == f"organization.{data['organizationId']}"
    assert config["target"]["client_secret_env"] == "BW_CLIENTSECRET"
    assert not any(secret in text for secret in SECRETS)
    assert any(k.endswith("_env") for k in config["source"])
    assert all(isinstance(u, str) and u for u in unmapped)
    for item in unmapped:
        assert item in text                      # listed in the file's header too


def test_ldap_ad_options_mapped() -> None:
    """AD: ldaps URL, bwdc's search bases, filters, and removeDisabled are carried over."""
    text, _ = convert(load_sample(DATA / "bwdc-ldap-ad.json"))
    src = tomllib.loads(text)["source"]
    assert src["url"] == "ldaps://dc1.corp.example.com:636"
    assert src["user_base"] == "CN=Users,dc=corp,dc=example,dc=com"
    assert src["group_filter"] == "(&(objectClass=group)(!(cn=Sales*)))"
    assert src["password_env"] == "LDAP_BIND_PASSWORD"
    sync = tomllib.loads(text)["sync"]
    assert sync["remove_disabled"] is True and sync["deprovision"] == "revoke"


def test_openldap_start_tls_overwrite_and_unmapped() -> None:
    """OpenLDAP: STARTTLS, paging off, overwrite -> remove_missing, a takeover of DN keys."""
    text, unmapped = convert(load_sample(DATA / "bwdc-ldap-openldap.json"))
    config = tomllib.loads(text)
    src = config["source"]
    assert src["url"] == "ldap://ldap.example.org:389" and src["start_tls"] is True
    assert src["page_size"] == 0 and src["user_base"] == "ou=people,dc=example,dc=org"
    assert src["email_prefix_attribute"] == "uid" and src["email_suffix"] == "@example.org"
    assert config["sync"]["remove_missing"] is True and config["sync"]["manage"] == "external_id"
    assert config["schedule"]["interval"] == "5m"          # bwdc's minimum
    assert config["target"]["server_url"] == "https://vault.example.org"
    assert config["target"]["large_import"] == "auto" and config["target"]["invite_users"] is False
    assert config["sync"]["takeover_from"] == "bwdc"
    assert "bwdc keyed this directory on the entry DN" in text and "> relink" in text
    assert not any("DN" in u for u in unmapped)             # handled, not unmapped


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_every_profile_takes_over_from_bwdc(path: Path) -> None:
    """Every directory type's profile recognises bwdc's keys, and the header says what
    the first plan shows for that type."""
    data = load_sample(path)
    text, _ = convert(data)
    assert tomllib.loads(text)["sync"]["takeover_from"] == "bwdc"
    relinks = data["directoryType"] == 0 and not data["directoryLdap"].get("ad", True)
    assert ("nothing needs relinking" in text) is not relinks
    assert "The first `dirconnector plan` is a takeover report" in text


def test_entra_filter_clauses_split() -> None:
    """Entra includeGroup/excludeGroup/exclude clauses become include_groups etc."""
    text, _ = convert(load_sample(DATA / "bwdc-entra.json"))
    src = tomllib.loads(text)["source"]
    assert src["include_groups"] == ["aaaaaaaa-0000-0000-0000-000000000001",
                                     "aaaaaaaa-0000-0000-0000-000000000002"]
    assert src["exclude_groups"] == ["bbbbbbbb-0000-0000-0000-000000000003"]
    assert src["user_filter"] == "exclude:ceo@contoso.com"
    assert tomllib.loads(text)["target"]["server_url"] == "https://vault.bitwarden.eu"


def test_self_hosted_urls_and_unused_ones_listed() -> None:
    """environmentUrls api/identity become overrides; icons is listed as unmapped."""
    text, unmapped = convert(load_sample(DATA / "bwdc-okta.json"))
    target = tomllib.loads(text)["target"]
    assert target["api_url"] == "https://bw-api.internal.example"
    assert target["identity_url"] == "https://bw-id.internal.example"
    assert any(u.startswith("environmentUrls.icons") for u in unmapped)
    assert tomllib.loads(text)["sync"]["sync_groups"] is False
    assert "schedule" not in tomllib.loads(text)           # interval 0: scheduling off


def test_not_a_bwdc_file_is_a_config_error() -> None:
    """A JSON file without directoryType is refused with a clear message."""
    with pytest.raises(ConfigError, match="directoryType"):
        convert({"hello": "world"})


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_output_passes_config_validation(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The converted profile validates with settings.load once its connector is installed."""
    from dirconnector import settings

    data = load_sample(path)
    kind = EXPECTED_TYPE[data["directoryType"]]
    _secrets_for(kind, monkeypatch)
    text, _ = convert(data)
    profile = settings.load(data=tomllib.loads(text))
    assert profile.source.type == kind
    assert profile.target.type == "bitwarden"


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_cli_import_then_config_validate(path: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`import-bwdc DATA --out F` writes a mode-600 profile that `config validate` accepts."""
    from click.testing import CliRunner

    from dirconnector.cli import main

    kind = EXPECTED_TYPE[load_sample(path)["directoryType"]]
    _secrets_for(kind, monkeypatch)
    out = tmp_path / "dirconnector.toml"
    result = CliRunner().invoke(main, ["import-bwdc", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o077 == 0
    assert not any(secret in out.read_text() for secret in SECRETS)
    valid = CliRunner().invoke(main, ["--config", str(out), "config", "validate"])
    assert valid.exit_code == 0, valid.output
