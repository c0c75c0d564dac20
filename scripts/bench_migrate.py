"""scripts/bench migrate: ``migrate plan``'s planning on a synthetic hand-off, one child per run.

The child generates a directory of N members in N/20 groups (UPNs equal to the email,
1% on another domain, 1% bare logins) and the Bitwarden organization an earlier sync
left: every member linked by directory id, plus drift (1% not provisioned yet, 1%
invited by hand without an external id, 1% leavers still on the server, 0.5% linked to
a stale id). The IdP's scope is nine groups in ten, so a tenth of the members are
unmanaged. Then it times, on the same two snapshots:

- ``build``: ``Snapshot.build`` of the directory and the server (the baseline every
  command pays before it plans);
- ``diff``: the sync's ``diff()`` of the same pair (the core planner, for scale);
- ``plan``: ``migrate_plan`` with the Entra preset (what ``migrate plan`` computes
  between its two reads), the figure issue 19 bounds: 100k members <= 2 s.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from typing import Any

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from bench_common import PYTHON, ROOT, fmt, log, run_child, summarise


def synthetic(n: int) -> tuple[list[Any], list[Any], list[Any], list[Any], list[str]]:
    """Directory users and groups, server accounts and groups, and the scope's group names."""
    from dirconnector.model import Group, User

    users, accounts = [], []
    for i in range(n):
        email = f"user.{i:07d}@example.com"
        login = (f"user.{i:07d}@corp.onmicrosoft.com" if i % 100 == 11
                 else f"u{i:07d}" if i % 100 == 12 else email)
        users.append(User(f"d{i:07d}", email, login, active=True))
        if i % 100 == 21:
            continue                                            # not provisioned yet
        ext = "" if i % 100 == 22 else f"stale{i:07d}" if i % 200 == 23 else f"d{i:07d}"
        accounts.append(User(ext, email, email, active=True, ref=f"m{i:07d}"))
    for i in range(n // 100):                                   # leavers still on the server
        accounts.append(User(f"gone{i:06d}", f"gone.{i:06d}@example.com",
                             f"gone.{i:06d}@example.com", active=True, ref=f"x{i:06d}"))
    g = max(1, n // 20)
    members: list[set[str]] = [set() for _ in range(g)]
    for i in range(n):
        members[i % g].add(f"d{i:07d}")
    groups = [Group(f"g{k:06d}", f"Group {k}", frozenset(members[k])) for k in range(g)]
    server_groups = [Group("" if k % 50 == 9 else f"g{k:06d}", f"Group {k}", ref=f"s{k:06d}")
                     for k in range(g)]
    scope = [grp.name for k, grp in enumerate(groups) if k % 10 != 4] or [groups[0].name]
    return users, groups, accounts, server_groups, scope


def child(n: int) -> None:
    from dirconnector.diff import Policy, diff
    from dirconnector.migrate.plan import PRESETS, Scope, migrate_plan
    from dirconnector.model import Snapshot

    users, groups, accounts, server_groups, scope = synthetic(n)
    gc.collect()
    w0 = time.perf_counter()
    desired = Snapshot.build(users, groups)
    current = Snapshot({a.ref: a for a in accounts}, {s.ref: s for s in server_groups},
                       info={"server": "bitwarden"})
    build = time.perf_counter() - w0
    w1 = time.perf_counter()
    changes = diff(desired, current, Policy(), frozenset()).changes
    diff_s = time.perf_counter() - w1
    w2 = time.perf_counter()
    plan = migrate_plan(desired, current, PRESETS["entra"], Scope(tuple(scope)))
    plan_s = time.perf_counter() - w2
    print(json.dumps({"build_s": build, "diff_s": diff_s, "plan_s": plan_s,
                      "members": len(plan.members), "groups": len(plan.groups),
                      "diff_changes": len(changes), "counts": plan.counts()}))


def run(sizes: list[int], repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for n in sizes:
        samples = []
        for r in range(repeat):
            log(f"migrate {n}: run {r + 1}/{repeat}")
            samples.append(run_child([PYTHON, str(ROOT / "scripts" / "bench_migrate.py"),
                                      "child", str(n)]))
        res = summarise(samples, ("build_s", "diff_s", "plan_s"))
        last = samples[-1].out
        res.update(members=last["members"], groups=last["groups"], counts=last["counts"],
                   diff_changes=last["diff_changes"])
        res["plan_vs_diff"] = res["plan_s"]["median"] / max(res["diff_s"]["median"], 1e-9)
        results[str(n)] = res
    return results


def table(results: dict[str, Any]) -> list[str]:
    lines = [f"{'members':>9} {'build (baseline)':>22} {'diff (baseline)':>22} "
             f"{'migrate plan':>22} {'plan/diff':>9} {'peak RSS':>20}  verdicts"]
    for n, r in results.items():
        cols = [fmt(r.get(k), "s", 3) for k in ("build_s", "diff_s", "plan_s")]
        c = r["counts"]
        verdicts = (f"{c['members.adopt_external_id']} adopt by id, "
                    f"{c['members.adopt_user_name']} by userName, {c['members.conflict']} "
                    f"conflict, {c['members.new']} new, {c['members.unmanaged']} unmanaged")
        lines.append(f"{int(n):>9} {cols[0]:>22} {cols[1]:>22} {cols[2]:>22} "
                     f"{r['plan_vs_diff']:>8.1f}x {fmt(r['rss_mb'], ' MB', 0):>20}  {verdicts}")
    return lines


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(int(sys.argv[2]))
    else:
        out = run([int(x) for x in (sys.argv[1:] or ["10000"])], 1)
        print("\n".join(table(out)))
