"""Run one phase of a plan on a bounded thread pool; record outcomes from the caller's thread.

Changes that touch the same resource (same key) run one after another in one task, so
two PATCHes of one account never race each other's ETag. Outcomes travel back on a
queue and ``record`` is called only from the calling thread (the journal may be a
SQLite connection bound to it), each as soon as it arrives. An AuthError stops the
workers from starting new changes, and is raised once the running ones finish. At
concurrency 1 there is no pool: the changes run on the calling thread, in the same order.
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from ...errors import AuthError, DirconnectorError
from ...outcome import Outcome
from ...plan import Change, CreateUser
from .. import Record
from .ops import Attempts, ScimWriter, change_key


def run_phase(changes: list[Change], writer: ScimWriter, record: Record,
              uncertain: set[int], concurrency: int, stop: threading.Event) -> None:
    """Run changes on the pool (at concurrency 1 on this thread); record outcomes from this
    thread as they arrive. Once ``stop`` is set no change starts; those running finish
    and are recorded."""
    if not changes:
        return
    by_key: dict[str, list[Change]] = defaultdict(list)
    for change in changes:
        by_key[change_key(change)].append(change)
    if concurrency == 1:
        # One at a time needs no pool. Handing each outcome from a worker to this thread
        # costs two thread wake-ups per change, about 0.25 ms of CPU after every wait for
        # a far server (a quarter of the client's CPU per change at 20 ms latency).
        for group in by_key.values():
            for change in group:
                if stop.is_set():
                    return  # interrupted: start nothing new
                record(_outcome(change, writer, uncertain))  # AuthError raises here
        return
    results: queue.Queue[Outcome | BaseException] = queue.Queue()
    halt = threading.Event()          # no new change: interrupted, or an AuthError

    def work(group: list[Change]) -> None:
        for change in group:
            if halt.is_set() or stop.is_set():
                return
            try:
                results.put(_outcome(change, writer, uncertain))
            except BaseException as exc:  # AuthError, or a bug: it must not hang the loop
                halt.set()
                results.put(exc)
                return

    abort: BaseException | None = None
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="scim")
    try:
        futures = [pool.submit(work, group) for group in by_key.values()]
        pending = len(changes)
        while pending and not ((abort or stop.is_set()) and all(f.done() for f in futures)):
            try:
                item = results.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(item, Outcome):
                pending -= 1
                record(item)
            elif abort is None:
                abort = item
    except BaseException:
        halt.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    while not results.empty():        # what finished while the loop was stopping
        item = results.get_nowait()
        if isinstance(item, Outcome):
            record(item)
    if abort is not None:
        raise abort


def _outcome(change: Change, writer: ScimWriter, uncertain: set[int]) -> Outcome:
    """Do one change; a DirconnectorError is its failed Outcome, AuthError and bugs raise."""
    try:
        if isinstance(change, CreateUser) and id(change) in uncertain:
            t = Attempts()
            ref = writer.create_user(change.user, t, uncertain=True)
            return Outcome(change, "ok", ref=ref, attempts=t.retries + 1)
        return writer.run(change)
    except AuthError:
        raise
    except DirconnectorError as exc:
        return Outcome(change, "failed", f"{change.user.email}: {exc}"
                       if isinstance(change, CreateUser) else str(exc))
