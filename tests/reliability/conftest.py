"""Fixtures of the reliability suite: one scim2-server, an artifacts folder, rigs.

Every rig keeps its config, state database, plan files and captured output under
the session's artifacts folder; the suite-wide leak check (tests/conftest.py) greps
all of it for every secret value, the known ones (``rig.KNOWN_SECRETS``) included,
when the session ends, whichever of these tests ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import watch_artifacts
from tests.integration.scim.conftest import ScimServer

from .rig import KNOWN_SECRETS, Rig, close_rig, make_rig, start_scim_process


def known_secrets() -> set[str]:
    """Every secret value the reliability runs use, child processes' included."""
    from tests.emulators.onelogin.seed import CLIENT_SECRET as ONELOGIN
    from tests.integration.azure.conftest import SECRET as AZURE
    from tests.integration.okta.conftest import TOKEN as OKTA

    slapd = {"reader-secret", "admin-secret"}   # scripts/servers/slapd
    return set(KNOWN_SECRETS) | slapd | {ONELOGIN, AZURE, OKTA}


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's artifacts folder, searched for secret values when the session ends."""
    path = tmp_path_factory.mktemp("reliability-artifacts")
    watch_artifacts(path, known_secrets())
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
