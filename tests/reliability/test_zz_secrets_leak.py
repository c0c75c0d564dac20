"""Last in the suite: no known secret value in any artifact of the reliability runs.

Every rig keeps its config, state database (runs, journal: the history), plan files,
daemon and subprocess output and the captured output of each CLI run, tracebacks
included, under the session's artifacts folder. The secrets are the values the runs
used: bearer tokens, API keys, client secrets, LDAP passwords.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ARTIFACTS
from .rig import KNOWN_SECRETS

pytestmark = pytest.mark.integration


def known_secrets() -> set[str]:
    found = set(KNOWN_SECRETS) | {"reader-secret", "admin-secret"}   # scripts/servers/slapd
    from tests.emulators.onelogin.seed import CLIENT_SECRET as ONELOGIN
    from tests.integration.azure.conftest import SECRET as AZURE
    from tests.integration.okta.conftest import TOKEN as OKTA

    return found | {ONELOGIN, AZURE, OKTA}


def test_no_secret_in_any_artifact(artifacts: Path) -> None:
    """Grep every log, report, plan, history row and captured output for the secrets."""
    secrets = {s.encode() for s in known_secrets()}
    files = [p for root in ARTIFACTS for p in root.rglob("*") if p.is_file()]
    if len(files) < 10:
        pytest.skip("run with the rest of tests/reliability: too few artifacts to judge")
    hits = []
    for path in files:
        try:
            data = path.read_bytes()
        except FileNotFoundError:      # a -wal/-shm file removed as its database closed
            continue
        hits += [f"{path.relative_to(path.parents[1])}: {s.decode()[:6]}…"
                 for s in secrets if s in data]
    assert hits == [], f"secrets found in {len(hits)} place(s): {hits[:10]}"
    # The grep did read the configs (they name the variables that hold the secrets).
    assert any(b"REL_SCIM_TOKEN" in p.read_bytes() for p in files
               if p.suffix == ".toml" and p.exists())
    kinds = {p.suffix or p.name for p in files}
    assert {".out", ".db", ".toml"} <= kinds, kinds
