"""Measure user creates on scim2-server: /Bulk requests vs one POST at a time (not a test).

    .venv/bin/python -m tests.integration.scim.bench_bulk [USERS]

Each mode gets a fresh scim2-server; the figure is the wall time of ``apply``.
"""

from __future__ import annotations

import sys
import time

from dirconnector.diff import diff
from dirconnector.model import Snapshot, User
from dirconnector.outcome import Outcome
from dirconnector.targets.scim import ScimSettings, ScimTarget

from .conftest import TOKEN, start_server


def run(n: int, **options: object) -> tuple[float, int, int]:
    server = start_server()
    try:
        settings = ScimSettings.model_validate(
            {"type": "scim", "url": server.url, "token": TOKEN, **options})
        target = ScimTarget(settings)
        users = [User(f"bench-{i:05d}", f"bench{i:05d}@example.org", display_name=f"Bench {i}",
                      given_name="Bench", family_name=str(i)) for i in range(n)]
        plan = diff(Snapshot.build(users), target.snapshot())
        outcomes: list[Outcome] = []
        start = time.perf_counter()
        target.apply(plan, outcomes.append)
        elapsed = time.perf_counter() - start
        ok = sum(o.status == "ok" for o in outcomes)
        return elapsed, ok, target.bulk_requests
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    for label, opts in (("bulk (500/request)", {"bulk": "auto", "bulk_size": 500}),
                        ("single POSTs, concurrency 8", {"bulk": "off"}),
                        ("single POSTs, concurrency 1", {"bulk": "off", "concurrency": 1})):
        elapsed, ok, bulk = run(n, **opts)
        print(f"{label:30s} {n} creates: {elapsed:6.1f} s, {ok} ok, {bulk} Bulk requests")


if __name__ == "__main__":
    main()
