"""The fault matrix: every fault against every target, a faulted sync, then a clean rerun.

One cell: sync D0 cleanly; change the directory to D1 (hires, leavers, renames,
membership moves, a new group); sync D1 while the proxy injects one kind of fault at
random (seeded per cell; one change in flight at a time, so a seed replays exactly);
check the journal of that run against what the server shows it did; rerun without
faults; check the server holds D1 within the managed scope (nothing lost, nothing
wrong, no duplicate) and that a further plan is empty.

``python -m tests.reliability.matrix`` (scripts/faults) prints the table.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.scim.conftest import ScimServer
from tests.integration.scim.proxy import Fault

from .rig import (
    TARGETS,
    Rig,
    Run,
    ServerView,
    close_rig,
    first_directory,
    journal_mismatches,
    judge,
    make_rig,
    second_directory,
    start_scim_process,
)

Maker = Callable[[random.Random], Fault]


def _status(code: int) -> Maker:
    # Half before the server sees the request, half after it acted (a gateway that lost
    # the answer): the second kind is the one that duplicates when retried blindly.
    return lambda rng: (Fault.status_code(code) if rng.random() < 0.5
                        else Fault.status_after(code))


FAULTS: dict[str, Maker] = {
    "429 Retry-After": lambda rng: Fault.status_code(429, retry_after="0.1"),
    "500": _status(500),
    "502": _status(502),
    "503": _status(503),
    "504": _status(504),
    # Client timeout is 1.0 s: either the server acted and the answer came late, or the
    # request reaches the server only after the client gave up.
    "read timeout": lambda rng: Fault.slow(1.3, after=rng.random() < 0.5),
    "reset before acting": lambda rng: Fault.reset_before(),
    "reset after acting": lambda rng: (Fault.reset_after() if rng.random() < 0.5
                                       else Fault.drop_after()),
    "truncated JSON": lambda rng: Fault.truncate(),
    "malformed JSON": lambda rng: Fault.malformed(),
    "slow response": lambda rng: Fault.slow(0.25, after=rng.random() < 0.5),
}
WRITE_RATE = {"scim": 0.35, "bw-scim": 0.35, "bitwarden": 0.5}
"""Chance that a write is faulted (the bitwarden target sends few, big requests)."""
READ_RATE = 0.08
"""Chance that a GET is faulted, once the apply has started (the first write seen): a
fault in the plan's reads only ends the run early, which test_target_read_fault covers."""
MAX_FAULTS = {"read timeout": 3}
"""Per-cell caps that keep the matrix inside its time budget."""
DEFAULT_MAX = 8


def chooser(fault: str, kind: str) -> tuple[Callable[[str, str], Fault | None], list[int]]:
    """A seeded fault picker for one cell, and a one-item counter of faults injected."""
    rng = random.Random(zlib.crc32(f"{fault}/{kind}".encode()))
    make = FAULTS[fault]
    used = [0]
    writing = [False]
    cap = MAX_FAULTS.get(fault, DEFAULT_MAX)

    def pick(method: str, path: str) -> Fault | None:
        if method != "GET" and not path.endswith("/connect/token"):
            writing[0] = True
        if not writing[0]:
            return None
        rate = READ_RATE if method == "GET" else WRITE_RATE[kind]
        if used[0] == 0 and method != "GET":
            rate = 1.0      # the first write is always hit: every cell injects something
        if used[0] >= cap or rng.random() >= rate:
            return None
        used[0] += 1
        return make(rng)

    return pick, used


@dataclass
class Cell:
    """The outcome of one fault x target."""

    fault: str
    target: str
    injected: int = 0
    changes: int = 0
    exits: tuple[int, ...] = ()
    lost: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    journal: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    """Known bugs this cell ran into (reported, not counted as failures here)."""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.wrong or self.duplicated or self.journal or self.problems)

    @property
    def only_known_bugs(self) -> bool:
        """Failing only by journal mismatches that strict-xfail tests already pin down."""
        return (not (self.lost or self.wrong or self.duplicated or self.problems)
                and all(known_journal_bug(self, line) for line in self.journal))

    @property
    def outcome(self) -> str:
        if not self.ok:
            return "FAIL (known bug**)" if self.only_known_bugs else "FAIL"
        first = self.exits[0] if self.exits else -1
        text = "converged" if first == 0 else "exit 1, rerun converged"
        return text + (" (known residue*)" if self.known else "")


def run_cell(fault: str, kind: str, root: Path, scim_process: ScimServer | None) -> Cell:
    t0 = time.perf_counter()
    cell = Cell(fault, kind)
    rig = make_rig(kind, root, scim_process)
    try:
        _run(rig, cell)
    finally:
        close_rig(rig)
        cell.seconds = time.perf_counter() - t0
    return cell


def _run(rig: Rig, cell: Cell) -> None:
    kind = rig.kind
    names, removals = kind == "scim", kind != "bw-scim"
    d0 = first_directory()
    rig.write(d0)
    rig.seed_outsider()
    setup = rig.cli("sync")
    if setup.exit_code != 0:
        cell.problems.append(f"clean first sync exited {setup.exit_code}: "
                             f"{setup.output[-300:]}")
        return
    d1 = second_directory(d0, renames=names, removals=removals)
    rig.write(d1)
    before = rig.view()
    pick, used = chooser(cell.fault, kind)
    rig.proxy.chooser = pick
    try:
        faulted = rig.cli("sync")
    finally:
        rig.proxy.chooser = None
    cell.injected = used[0]
    after = rig.view()
    rows = rig.journal(rig.last_run_id())
    cell.changes = len(rows)
    cell.journal += journal_mismatches(before, after, rows)
    rerun = rig.cli("sync")
    final = rig.view()
    rerun_rows = rig.journal(rig.last_run_id())
    cell.journal += journal_mismatches(after, final, rerun_rows)
    plan_file = rig.root / "after-rerun.plan.json"
    check = rig.cli("plan", "--detailed-exitcode", "--out", str(plan_file))
    cell.exits = (faulted.exit_code, rerun.exit_code, check.exit_code)
    residue: list[dict[str, Any]] = []
    if plan_file.exists():
        residue = [c for c in json.loads(plan_file.read_text())["changes"]
                   if not known_residue(kind, c, final)]
    if kind == "bw-scim" and check.exit_code == 2 and not residue:
        cell.known.append("plan never empties (unreadable name fields, unknown members)")
        check = Run(check.args, 0, check.output)
    bad_rows = [r for r in rerun_rows if r["status"] != "ok"
                and not known_residue(kind, r["change"], final)]
    if kind == "bw-scim" and rerun.exit_code == 1 and rerun_rows and not bad_rows:
        cell.known.append("rerun exits 1 for skipped name updates")
        rerun = Run(rerun.args, 0, rerun.output)
    for run in (faulted, rerun, check):
        if run.crash:
            cell.problems.append(f"{' '.join(run.args)} crashed: "
                                 f"{run.crash.strip().splitlines()[-1]}")
    if faulted.exit_code not in (0, 1):
        cell.problems.append(f"faulted sync exited {faulted.exit_code}")
    if faulted.exit_code == 0 and not (v := judge(after, d1, names=names,
                                                  removals=removals)).clean:
        cell.problems.append(f"faulted sync exited 0 but the server differs: "
                             f"{(v.lost + v.wrong + v.duplicated)[:3]}")
    if faulted.exit_code == 1 and "Error:" not in faulted.output:
        cell.problems.append("faulted sync exited 1 without an error line")
    if rerun.exit_code != 0:
        cell.problems.append(f"clean rerun exited {rerun.exit_code}: {rerun.output[-300:]}")
    if check.exit_code != 0:
        cell.problems.append(f"plan after the rerun is not empty (exit {check.exit_code}): "
                             f"{check.output[-300:]}")
    verdict = judge(final, d1, names=names, removals=removals)
    cell.lost, cell.wrong, cell.duplicated = verdict.lost, verdict.wrong, verdict.duplicated


def known_journal_bug(cell: Cell, line: str) -> bool:
    """A journal mismatch a pinned, still-open bug explains. None are open: the three
    found by this suite (5xx after a create, a revoke whose answer was lost, an import
    answered 5xx after acting) were fixed, and their tests in test_faults.py now pass."""
    return False


def known_residue(kind: str, change: dict[str, Any], view: ServerView) -> bool:
    """Changes a target re-plans forever by design. None: the bw-scim rig reads group
    members through [target.public_api], and diff compares only the fields a target
    stores (Target.user_fields)."""
    return False


def table(cells: list[Cell]) -> str:
    head = ("fault", "target", "faults", "changes", "exits", "lost", "wrong", "dup",
            "journal", "outcome")
    rows = [head] + [(c.fault, c.target, str(c.injected), str(c.changes),
                      "/".join(map(str, c.exits)) or "-", str(len(c.lost)), str(len(c.wrong)),
                      str(len(c.duplicated)), str(len(c.journal)), c.outcome) for c in cells]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    total = (f"cells {len(cells)}, faults injected {sum(c.injected for c in cells)}, "
             f"lost {sum(len(c.lost) for c in cells)}, wrong {sum(len(c.wrong) for c in cells)}, "
             f"duplicated {sum(len(c.duplicated) for c in cells)}, journal mismatches "
             f"{sum(len(c.journal) for c in cells)}, failing cells "
             f"{sum(not c.ok for c in cells)}")
    note = ("* bw-scim: the plan never empties: without a members provider every plan "
            "re-adds every group member (known; "
            "tests/reliability/test_faults.py::test_bw_scim_reaches_an_empty_plan)\n"
            if any(c.known for c in cells) else "")
    if any(not c.ok and c.only_known_bugs for c in cells):
        note += ("** journal says failed where the server acted after an ambiguous answer "
                 "(bitwarden: lost revoke answer, 5xx to an import; scim: 5xx to a create); pinned "
                 "by strict "
                 "xfail tests in tests/reliability/test_faults.py\n")
    return "\n".join(lines) + "\n" + total + "\n" + note


def details(cells: list[Cell]) -> str:
    out = []
    for c in cells:
        if not c.ok:
            out.append(f"{c.fault} x {c.target}:")
            for what in (c.problems, c.lost, c.wrong, c.duplicated, c.journal):
                out += [f"  {w}" for w in what[:6]]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    """Run the whole matrix (or the faults named in argv) and print it."""
    faults = [f for f in FAULTS if not argv or f in argv]
    scim = start_scim_process()
    cells = []
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="dirconnector-faults-") as tmp:
            for fault in faults:
                for kind in TARGETS:
                    root = Path(tmp) / f"{zlib.crc32(fault.encode()):08x}-{kind}"
                    cells.append(run_cell(fault, kind, root, scim))
    finally:
        scim.process.terminate()
        scim.process.wait(timeout=10)
    print(table(cells))
    print(f"wall time {time.perf_counter() - t0:.1f}s")
    bad = details(cells)
    if bad:
        print(bad)
    return 0 if all(c.ok for c in cells) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
