"""The takeover sequence an administrator runs after bwdc: import-bwdc, plan, sync, plan.

Shared by the takeover tests of every directory type. The directory and the Bitwarden
test server are set up by the caller (bwdc's leftovers seeded with tests/emulators/bwdc).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from dirconnector import cli


@dataclass
class Takeover:
    """A converted profile and the environment its secrets come from."""

    profile: Path
    env: dict[str, str]

    def run(self, *args: str) -> Result:
        """One dirconnector command on this profile, in process."""
        return CliRunner().invoke(cli.main, ["--config", str(self.profile), *args], env=self.env)

    def text(self) -> str:
        return self.profile.read_text()


def import_bwdc(tmp_path: Path, data: dict[str, Any], env: dict[str, str],
                source_extra: str = "", sync_extra: str = "") -> Takeover:
    """``dirconnector import-bwdc data.json --out profile.toml``, then the state path (and
    whatever a test server needs: endpoints of an emulator) appended by hand."""
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    profile = tmp_path / "dirconnector.toml"
    result = CliRunner().invoke(cli.main, ["import-bwdc", str(data_file), "--out", str(profile)])
    assert result.exit_code == 0, result.output
    text = profile.read_text()
    if source_extra:
        text = text.replace("[source]\n", f"[source]\n{source_extra}\n", 1)
    if sync_extra:
        text = text.replace("[sync]\n", f"[sync]\n{sync_extra}\n", 1)
    text += f'\n[state]\npath = "{tmp_path / "state.db"}"\n'
    profile.write_text(text)
    return Takeover(profile, env)


APPLIED = re.compile(r"Applied (\d+) of (\d+) change\(s\); (\d+) failed")


def applied(output: str) -> tuple[int, int, int]:
    """(ok, total, failed) from a sync's closing line."""
    found = APPLIED.search(output)
    assert found is not None, output[-2000:]
    ok, total, failed = map(int, found.groups())
    return ok, total, failed
