"""Run the watch engine (dirconnector.watch) in a thread, and wait for what it does: shared
by the watch tests of every source."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from dirconnector import settings
from dirconnector.state import open_store
from dirconnector.watch import Watcher


class Watching:
    """``with Watching(profile) as w:`` a Watcher runs until the block ends."""

    def __init__(self, profile: settings.Profile) -> None:
        self.store = open_store(profile.settings.state)
        self.stop = threading.Event()
        self.watcher = Watcher(profile, self.store, stop=self.stop)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.watcher.run()
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def __enter__(self) -> Watching:
        self.thread.start()
        until(lambda: self.watcher.full_syncs >= 1 and bool(self.watcher.position), 30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=20)
        self.store.close()
        assert self.error is None, self.error


def until(check: Callable[[], Any], seconds: float) -> float:
    """Seconds it took ``check`` to hold; fails after ``seconds``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if check():
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s")


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank) of a few lag samples."""
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


WATCH_SYNC = {"remove_missing": True, "max_revocation_ratio": 1.0, "max_revocations": 1000,
              "max_membership_removal_ratio": 1.0, "min_source_ratio": 0.0,
              "delete_missing_groups": True, "batch_window": "0.2s"}
"""[sync] for the small orgs of these tests (the guard's ratios would refuse one revocation)."""
