"""The fault matrix as tests: every fault x target converges with nothing lost or doubled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.scim.conftest import ScimServer
from tests.integration.scim.proxy import Fault

from .conftest import MakeRig
from .matrix import FAULTS, known_journal_bug, run_cell, table
from .rig import TARGETS, Directory, Rig, first_directory, journal_mismatches, second_directory

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_cell(fault: str, kind: str, artifacts: Path, scim_process: ScimServer) -> None:
    """A sync under this fault, then a clean rerun: no change lost, wrong or duplicated."""
    root = artifacts / f"matrix-{abs(hash(fault)) % 10**8}-{kind}"
    cell = run_cell(fault, kind, root, scim_process)
    print(table([cell]))
    assert cell.injected > 0, "the seed injected no fault; pick another"
    assert cell.problems == []
    assert (cell.lost, cell.wrong, cell.duplicated) == ([], [], [])
    # Journal lines the strict-xfail tests below pin down are tolerated here (they show
    # in scripts/faults as "FAIL (known bug)"); any other disagreement fails the cell.
    assert [line for line in cell.journal if not known_journal_bug(cell, line)] == []


def test_bw_scim_reaches_an_empty_plan(make_rig_for: MakeRig) -> None:
    """scim (flavor bitwarden) via the CLI: after one clean sync the next plan is empty."""
    rig = make_rig_for("bw-scim")
    rig.write(first_directory())
    assert rig.cli("sync").exit_code in (0, 1)
    out = rig.root / "p.json"
    check = rig.cli("plan", "--detailed-exitcode", "--out", str(out))
    assert check.exit_code == 0, json.loads(out.read_text())["summary"]


def _synced(make_rig_for: MakeRig, kind: str, extra: str = "") -> tuple[Rig, Directory]:
    """A rig whose server holds D0 (clean sync), with D1 written as the next directory."""
    rig = make_rig_for(kind)
    rig.target_extra = extra
    d0 = first_directory()
    rig.write(d0)
    rig.seed_outsider()
    assert rig.cli("sync").exit_code == 0
    d1 = second_directory(d0, renames=False, removals=kind != "bw-scim")
    rig.write(d1)
    return rig, d1


def _users_path(rig: Rig) -> str:
    if rig.scim is not None:
        return rig.scim.path + "/Users"
    assert rig.bw is not None
    return f"/v2/{rig.bw.org_id}/users"


@pytest.mark.parametrize("kind", TARGETS)
def test_target_read_fault_fails_without_changes(make_rig_for: MakeRig, kind: str) -> None:
    """A server read that stays broken (malformed JSON) fails the run: exit 1, nothing written."""
    rig, _ = _synced(make_rig_for, kind)
    before = rig.view()
    path = "/api/public/members" if kind == "bitwarden" else _users_path(rig)
    rig.proxy.inject("GET", path, Fault.malformed(), times=10)
    run = rig.cli("sync")
    assert run.exit_code == 1 and not run.crash
    error = [line for line in run.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "JSON" in error[0], run.output[-500:]
    assert rig.view() == before
    assert rig.journal(rig.last_run_id()) == []
    assert rig.run_rows()[-1][1] == "failed"


@pytest.mark.parametrize("kind", ["scim", "bw-scim"])
def test_create_answered_500_after_acting_is_journalled(make_rig_for: MakeRig,
                                                        kind: str) -> None:
    """POST /Users created the account but a gateway answered 500: the journal says created."""
    rig, _ = _synced(make_rig_for, kind, 'bulk = "off"\n')
    rig.proxy.inject("POST", _users_path(rig), Fault.status_after(500))
    before = rig.view()
    run = rig.cli("sync")
    assert run.exit_code in (0, 1)
    assert journal_mismatches(before, rig.view(), rig.journal(rig.last_run_id())) == []


def test_revoke_answer_lost_is_journalled(make_rig_for: MakeRig) -> None:
    """POST members/{id}/revoke timed out after the server revoked: the journal says revoked."""
    rig, _ = _synced(make_rig_for, "bitwarden")
    rig.proxy.inject("POST", "/api/public/members/", Fault.slow(1.3, after=True))
    before = rig.view()
    rig.cli("sync")
    assert journal_mismatches(before, rig.view(), rig.journal(rig.last_run_id())) == []


def test_import_answered_500_after_acting_is_journalled(make_rig_for: MakeRig) -> None:
    """POST organization/import applied but answered 500: the journal says who was created."""
    rig, _ = _synced(make_rig_for, "bitwarden")
    rig.proxy.inject("POST", "/api/public/organization/import", Fault.status_after(500))
    before = rig.view()
    run = rig.cli("sync")
    assert run.exit_code in (0, 1)
    assert journal_mismatches(before, rig.view(), rig.journal(rig.last_run_id())) == []
