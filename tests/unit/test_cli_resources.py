"""The CLI run in-process (tests, an embedding program) leaves no file open behind it."""

from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path

from click.testing import CliRunner

from dirconnector import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "directory.json"


def test_commands_close_the_state_store(tmp_path: Path) -> None:
    """Thirty `history` runs leave no descriptor open (each store is closed at the end)."""
    shutil.copy(EXAMPLES, tmp_path / "dir.json")
    config = tmp_path / "c.toml"
    config.write_text(f'[source]\ntype = "file"\nusers = "{tmp_path / "dir.json"}"\n'
                      f'[target]\ntype = "scim"\nurl = "http://127.0.0.1:9"\ntoken_env = "T"\n'
                      f'[state]\npath = "{tmp_path / "s.db"}"\n')
    runner = CliRunner()
    runner.invoke(cli.main, ["--config", str(config), "history"], env={"T": "t0ken-x"})
    gc.disable()                     # only an explicit close may release them
    try:
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(30):
            result = runner.invoke(cli.main, ["--config", str(config), "history"],
                                   env={"T": "t0ken-x"})
            assert result.exit_code == 0, result.output
        assert len(os.listdir("/proc/self/fd")) - before <= 2
    finally:
        gc.enable()
