"""Carrying out a plan: phase order, bounded concurrency, per-change outcomes.

``run_phases`` is the loop a target uses when it applies changes one request at a
time: phases in plan order (users, then groups, then memberships, removals last),
changes within a phase in parallel up to ``concurrency``, every outcome recorded
as soon as it is known, a failed change recorded and the rest continued. An
AuthError stops everything: every further request would fail the same way.

``ApplyReport`` tallies what happened for the report and the exit code.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from .errors import AuthError, DirconnectorError
from .outcome import Outcome
from .plan import Change, Plan

log = logging.getLogger(__name__)

DoOne = Callable[[Change], Outcome]


def run_phases(
    plan: Plan | Sequence[Sequence[Change]],
    do_one: DoOne,
    record: Callable[[Outcome], None],
    concurrency: int = 8,
    stop: threading.Event | None = None,
) -> None:
    """Apply changes phase by phase; ``do_one`` returns an Outcome or raises."""
    phases = list(plan.by_phase()) if isinstance(plan, Plan) else [list(p) for p in plan]
    stop = stop or threading.Event()
    fatal: list[BaseException] = []

    def one(change: Change) -> Outcome:
        if stop.is_set():
            return Outcome(change, "skipped", "run stopped before this change")
        try:
            return do_one(change)
        except AuthError as exc:
            stop.set()
            fatal.append(exc)
            return Outcome(change, "failed", str(exc))
        except DirconnectorError as exc:
            return Outcome(change, "failed", str(exc))
        except Exception as exc:  # a bug must not lose the journal of the other changes
            log.exception("unexpected error applying %s", change.kind)
            return Outcome(change, "failed", f"internal error: {type(exc).__name__}: {exc}")

    workers = max(1, concurrency)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apply") as pool:
        for batch in phases:
            if workers == 1:
                for change in batch:
                    record(one(change))
                continue
            pending: set[Future[Outcome]] = set()
            queue = list(reversed(batch))
            while queue or pending:
                while queue and len(pending) < workers * 2:
                    pending.add(pool.submit(one, queue.pop()))
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    record(fut.result())
    if fatal:
        raise fatal[0]


@dataclass
class ApplyReport:
    """Outcomes of one apply, tallied."""

    outcomes: list[Outcome] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        return not any(o.status != "ok" for o in self.outcomes)

    def counts(self) -> dict[str, int]:
        tally: Counter[str] = Counter()
        for o in self.outcomes:
            tally[f"{o.change.kind}.{o.status}"] += 1
        return dict(sorted(tally.items()))
