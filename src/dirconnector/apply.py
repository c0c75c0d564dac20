"""ApplyReport: the outcomes of one apply, tallied for the report and the exit code.

The apply loop itself belongs to each target (``Target.apply``): the order comes from
``Plan.by_phase()`` (users before memberships, removals last), retries from
``dirconnector.http``; a run is interrupted by the ``stop`` event a target is given.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from .outcome import Outcome


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
