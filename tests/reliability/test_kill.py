"""kill -9 of `dirconnector sync` at random points of an apply; a clean rerun converges."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import time

import pytest

from tests.integration.scim.proxy import Fault

from .conftest import MakeRig
from .rig import TARGETS, Rig, first_directory, journal_mismatches, judge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLS = 3
SEED = 20261128
SLOW = {"scim": 0.05, "bw-scim": 0.05, "bitwarden": 0.4}
"""Seconds added to every request, so an apply lasts long enough to be cut (a bitwarden
sync of the 40-user directory is about six requests: 6 x 0.4 s outlasts the longest delay)."""


def runs_now(rig: Rig) -> list[tuple[str, str, str]]:
    try:
        return rig.run_rows() if rig.state.exists() else []
    except sqlite3.OperationalError:  # the child is still creating the schema
        return []


def kill_point(rig: Rig, proc: subprocess.Popen[str], rng: random.Random, known: int) -> None:
    """SIGKILL once the run is applying: after a seeded number of journal rows (SCIM
    targets journal change by change) or a seeded delay into the run (the bitwarden
    target journals after its import)."""
    rows_wanted = rng.randint(1, 12)
    delay = rng.uniform(0.2, 1.5)
    started = 0.0
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        runs = runs_now(rig)
        if len(runs) > known and runs[-1][1] == "running":
            if rig.kind == "bitwarden":
                started = started or time.monotonic()
                if time.monotonic() - started >= delay:
                    break
            elif len(rig.journal(runs[-1][0])) >= rows_wanted:
                break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.mark.parametrize("kind", TARGETS)
def test_kill_nine_then_rerun_converges(make_rig_for: MakeRig, kind: str) -> None:
    """Three SIGKILLs mid-sync (seeded delays): no false journal row; the rerun converges."""
    rig = make_rig_for(kind)
    if kind == "scim":
        rig.target_extra = 'bulk = "off"\n'   # one POST per create: many points to cut
    d = first_directory(40)
    rig.write(d)
    rig.seed_outsider()
    slow = SLOW[kind]
    rig.proxy.chooser = lambda method, path: Fault.slow(slow, after=False)
    rng = random.Random(f"{SEED}/{kind}")
    landed = 0
    for _ in range(KILLS):
        before = rig.view()
        known = len(runs_now(rig))
        proc = rig.subprocess("sync")
        kill_point(rig, proc, rng, known)
        rows = rig.run_rows()
        if len(rows) > known and rows[-1][1] == "running":   # killed inside the run, not before or after
            landed += 1
            journal = rig.journal(rows[-1][0])
            assert journal_mismatches(before, rig.view(), journal, killed=True) == []
    assert landed == KILLS, "every kill should land inside a run"
    rig.proxy.chooser = None
    rerun = rig.cli("sync")
    assert rerun.exit_code in ((0, 1) if kind == "bw-scim" else (0,)), rerun.output[-800:]
    assert not rerun.crash
    statuses = [status for _, status, _ in rig.run_rows()]
    assert "running" not in statuses  # killed runs are closed as interrupted by the next one
    assert statuses.count("interrupted") >= landed
    verdict = judge(rig.view(), d, names=kind == "scim", removals=kind != "bw-scim")
    assert (verdict.lost, verdict.wrong, verdict.duplicated) == ([], [], [])
