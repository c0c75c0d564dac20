"""Fixtures of the reliability suite: one scim2-server, an artifacts folder, rigs.

Every rig keeps its config, state database, plan files and captured output under
the session's artifacts folder; ``test_zz_secrets_leak`` greps all of it for the
known secret values (``rig.KNOWN_SECRETS``) at the end of the suite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.scim.conftest import ScimServer

from .rig import Rig, close_rig, make_rig, start_scim_process

ARTIFACTS: list[Path] = []
"""Folders holding the reliability runs' artifacts (shared with the leak test)."""


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reliability-artifacts")
    ARTIFACTS.append(path)
    return path


@pytest.fixture(scope="session")
def scim_process() -> Iterator[ScimServer]:
    server = start_scim_process()
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


MakeRig = Callable[[str], Rig]


@pytest.fixture
def make_rig_for(artifacts: Path, scim_process: ScimServer,
                 request: pytest.FixtureRequest) -> Iterator[MakeRig]:
    """Build rigs (closed at the end of the test) with their files under the artifacts."""
    rigs: list[Rig] = []
    name = "".join(c if c.isalnum() else "_" for c in request.node.name)[:80]

    def make(kind: str) -> Rig:
        rig = make_rig(kind, artifacts / f"{name}-{len(rigs)}-{kind}", scim_process)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        close_rig(rig)


SLAPD_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "servers" / "slapd"


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real OpenLDAP slapd with 100 generated people in 5 groups (scripts/servers/slapd)."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    if not Path(os.environ.get("SLAPD", "/usr/sbin/slapd")).exists() or not shutil.which(
            "ldapmodify"):
        pytest.skip("slapd / ldap-utils are not installed (scripts/test installs them as root)")
    run_dir = tmp_path_factory.mktemp("rel-slapd")
    subprocess.run([sys.executable, str(SLAPD_SCRIPT), "start", "--fresh", "--run-dir",
                    str(run_dir), "--users", "100", "--groups", "5"],
                   check=True, capture_output=True)
    try:
        yield json.loads((run_dir / "env.json").read_text())
    finally:
        subprocess.run([sys.executable, str(SLAPD_SCRIPT), "stop", "--run-dir", str(run_dir)],
                       check=False, capture_output=True)
