"""scripts/bench diff: the core's cost on a synthetic directory, in one child process per run.

The child generates N users and N/20 groups (shallow nesting, 5% disabled, 2% without
mail), the server's view of the same organisation after an earlier sync (refs instead
of external ids as keys, disabled users already revoked) plus a little drift (0.1%
renamed, 0.1% new, 0.1% newly disabled, a few membership changes; accounts and groups
in an order of the server's own, revoked users still in their groups), then times:
``Snapshot.build`` of the source, ``diff()`` (which flattens the nesting and computes
the directory's digest, as a sync does; the server's digest is only worked out when a
plan is saved or printed as JSON), and ``digest()`` of a fresh source snapshot (the
no-op run's only core cost). Peak RSS is the whole child, both snapshots included.
"""

from __future__ import annotations

import gc
import json
import random
import sys
import time
from typing import Any

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from bench_common import PYTHON, ROOT, fmt, log, run_child, summarise


def synthetic(n: int) -> tuple[list[Any], list[Any], Any]:
    """Source users and groups, and the server snapshot an earlier sync left (drift added)."""
    from dirconnector.model import Group, Snapshot, User, flatten

    users = []
    for i in range(n):
        mail = "" if i % 50 == 7 else f"User.{i:07d}@Example.com"
        users.append(User(f"u{i:07d}", mail, f"user{i:07d}", f"Given{i} Family{i}",
                          f"Given{i}", f"Family{i}", active=i % 20 != 3))
    g = max(1, n // 20)
    members: list[set[str]] = [set() for _ in range(g)]
    for i in range(n):
        members[i % g].add(f"u{i:07d}")
    groups = []
    for k in range(g):
        # Every fifth group sits inside group k // 10: about a fifth of the groups nested,
        # chains a few levels deep (a realistic department tree, not a pathological one).
        subs = frozenset(f"g{c:06d}" for c in range(10 * k, min(g, 10 * k + 10))
                         if c % 5 == 0 and c != k)
        groups.append(Group(f"g{k:06d}", f"Group {k}", frozenset(members[k]), subs))
    # The server after a previous sync: every active user with mail exists, keyed by ref.
    source = Snapshot.build(users, groups)
    flat = flatten(source.groups)
    server_users = {}
    for ext, u in source.users.items():
        i = int(ext[1:])
        if i % 1000 == 1:
            continue                                   # new since the last run: a create
        name = f"Old Name {i}" if i % 1000 == 2 else u.display_name
        active = u.active or i % 1000 == 3             # newly disabled: still active there
        ref = f"r{i:07d}"
        server_users[ref] = User(ext, u.email, u.user_name, name, u.given_name, u.family_name,
                                 active, ref)
    ref_of = {u.external_id: u.key for u in server_users.values()}
    server_groups = {}
    for gid, grp in source.groups.items():
        k = int(gid[1:])
        # Revoked members stay in their groups (diff keeps them there, as Bitwarden does).
        refs = {ref_of[m] for m in flat[gid] if m in ref_of}
        if k % 100 == 5 and refs:
            refs.discard(min(refs))                    # a member added since: one add
        ref = f"s{k:06d}"
        server_groups[ref] = Group(gid, grp.name, frozenset(refs), frozenset(), ref)
    # A server lists its accounts in its own order, not the directory's.
    shuffled_users, shuffled_groups = list(server_users.items()), list(server_groups.items())
    random.Random(7).shuffle(shuffled_users)
    random.Random(8).shuffle(shuffled_groups)
    server = Snapshot(dict(shuffled_users), dict(shuffled_groups))
    return users, groups, server


def child(n: int) -> None:
    from dirconnector.diff import Policy, diff
    from dirconnector.model import Snapshot

    users, groups, server = synthetic(n)
    gc.collect()
    t0 = time.process_time()
    w0 = time.perf_counter()
    source = Snapshot.build(users, groups)
    build = time.perf_counter() - w0
    w1 = time.perf_counter()
    plan = diff(source, server, Policy(), frozenset())
    diff_s = time.perf_counter() - w1
    cpu = time.process_time() - t0
    again = Snapshot.build(users, groups)
    w2 = time.perf_counter()
    again.digest()
    digest_s = time.perf_counter() - w2
    counts = plan.counts()
    print(json.dumps({"build_s": build, "diff_s": diff_s, "build_diff_cpu_s": cpu,
                      "digest_s": digest_s, "users": len(source.users),
                      "groups": len(source.groups), "changes": len(plan.changes),
                      "counts": counts}))


def run(sizes: list[int], repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for n in sizes:
        reps = repeat if n < 1_000_000 else max(1, min(repeat, 2))   # ~1 min each
        samples = []
        for r in range(reps):
            log(f"diff {n}: run {r + 1}/{reps}")
            samples.append(run_child([PYTHON, str(ROOT / "scripts" / "bench_diff.py"), "child",
                                      str(n)]))
        res = summarise(samples, ("build_s", "diff_s", "build_diff_cpu_s", "digest_s"))
        last = samples[-1].out
        res.update(users=last["users"], groups=last["groups"], changes=last["changes"],
                   counts=last["counts"])
        results[str(n)] = res
    return results


def table(results: dict[str, Any]) -> list[str]:
    lines = [f"{'size':>9} {'build':>22} {'diff':>22} {'digest':>22} {'peak RSS':>20}  plan"]
    for n, r in results.items():
        cols = [fmt(r.get(k), "s", 3) for k in ("build_s", "diff_s", "digest_s")]
        lines.append(f"{int(n):>9} {cols[0]:>22} {cols[1]:>22} {cols[2]:>22} "
                     f"{fmt(r['rss_mb'], ' MB', 0):>20}  {r['changes']} changes")
    return lines


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(int(sys.argv[2]))
    else:
        out = run([int(x) for x in (sys.argv[1:] or ["100000"])], 1)
        print("\n".join(table(out)))
