"""Measure user creates on scim2-server: /Bulk requests vs one POST at a time (not a test).

    .venv/bin/python -m tests.integration.scim.bench_bulk [USERS]

Each mode gets a fresh scim2-server; the figures are the wall time of ``apply`` and
the CPU seconds the server and this client spent in it (CPU time does not depend on how
busy a shared machine is; wall time does).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from dirconnector.diff import diff
from dirconnector.model import Snapshot, User
from dirconnector.outcome import Outcome
from dirconnector.targets.scim.target import ScimSettings, ScimTarget

from .conftest import TOKEN, start_server


def server_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(n: int, **options: object) -> tuple[float, float, float, int, int]:
    server = start_server()
    try:
        settings = ScimSettings.model_validate(
            {"type": "scim", "url": server.url, "token": TOKEN, **options})
        target = ScimTarget(settings)
        users = [User(f"bench-{i:05d}", f"bench{i:05d}@example.org", display_name=f"Bench {i}",
                      given_name="Bench", family_name=str(i)) for i in range(n)]
        plan = diff(Snapshot.build(users), target.snapshot())
        outcomes: list[Outcome] = []
        cpu0, srv0 = time.process_time(), server_cpu(server.process.pid)
        start = time.perf_counter()
        target.apply(plan, outcomes.append)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        srv = server_cpu(server.process.pid) - srv0
        ok = sum(o.status == "ok" for o in outcomes)
        return elapsed, srv, cpu, ok, target.bulk_requests
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    for label, opts in (("bulk (500/request)", {"bulk": "auto", "bulk_size": 500}),
                        ("single POSTs, concurrency 8", {"bulk": "off"}),
                        ("single POSTs, concurrency 1", {"bulk": "off", "concurrency": 1})):
        elapsed, srv, cpu, ok, bulk = run(n, **opts)
        print(f"{label:28s} {n} creates: {elapsed:6.1f} s wall, server CPU {srv:5.1f} s, "
              f"client CPU {cpu:5.1f} s, {ok} ok, {bulk} Bulk requests")


if __name__ == "__main__":
    main()
