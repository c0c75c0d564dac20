"""scripts/bench apply: user creates plus memberships against a SCIM server far away.

The server is tests/emulators/scimlat (threaded, a fixed latency per request, 20 ms by
default: a realistic WAN round trip) in its own process. Each run is a child process
that reads the empty server, plans N user creates (5% of the directory disabled, so
not created) and N/20 groups with their members, and applies the plan with the
``scim`` target at a given concurrency, Bulk off (one POST per user) for the
concurrency curve and Bulk on for one more figure. The child reports the apply's wall
time and its own CPU time (all threads), from which CPU per change is computed; the
server's request counts prove what was sent.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from bench_common import PYTHON, ROOT, Sample, fmt, log, run_child, summarise

TOKEN = "bench-token"


def child(url: str, n: int, concurrency: int, bulk: str) -> None:
    from dirconnector.diff import USER_FIELDS, Policy, diff
    from dirconnector.model import Group, Snapshot, User
    from dirconnector.outcome import Outcome
    from dirconnector.targets.scim.target import ScimSettings, ScimTarget

    target = ScimTarget(ScimSettings(type="scim", url=url, token=TOKEN,
                                     concurrency=concurrency, bulk=bulk))
    users = [User(f"u{i:07d}", f"user{i:07d}@example.com", f"user{i:07d}", f"User {i}",
                  "User", str(i), active=i % 20 != 3) for i in range(n)]
    g = max(1, n // 20)
    groups = [Group(f"g{k:05d}", f"Group {k}",
                    frozenset(f"u{i:07d}" for i in range(k, n, g))) for k in range(g)]
    desired = Snapshot.build(users, groups)
    plan = diff(desired, target.snapshot(), Policy(), frozenset(),
                tuple(getattr(target, "user_fields", USER_FIELDS)))
    outcomes: list[Outcome] = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    target.apply(plan, outcomes.append)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    ok = sum(1 for o in outcomes if o.status == "ok")
    print(json.dumps({"apply_s": wall, "apply_cpu_s": cpu, "changes": len(plan.changes),
                      "ok": ok, "counts": dict(plan.counts()),
                      "bulk_requests": target.bulk_requests}))


def start_server(latency: float, bulk: bool) -> tuple[subprocess.Popen[bytes], str]:
    cmd = [PYTHON, "-m", "tests.emulators.scimlat.server", "--latency", str(latency),
           "--token", TOKEN]
    if bulk:
        cmd.append("--bulk")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, str(json.loads(line)["url"])


def stats(url: str) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(url.rsplit("/scim/v2", 1)[0] + "/_stats", timeout=10) as r:
        return dict(json.loads(r.read()))


def one(n: int, concurrency: int, bulk: bool, latency: float) -> Sample:
    proc, url = start_server(latency, bulk)
    try:
        sample = run_child([PYTHON, str(ROOT / "scripts" / "bench_apply.py"), "child", url,
                            str(n), str(concurrency), "auto" if bulk else "off"])
        sample.out["requests"] = stats(url)
    finally:
        proc.terminate()
        proc.wait(10)
    if sample.out["ok"] != sample.out["changes"]:
        raise SystemExit(f"bench apply: only {sample.out['ok']} of {sample.out['changes']} "
                         f"changes applied")
    return sample


def run(n: int, repeat: int, latency: float = 0.02,
        levels: tuple[int, ...] = (1, 4, 8, 16)) -> dict[str, Any]:
    """Concurrency curve with Bulk off, then Bulk on at concurrency 8."""
    results: dict[str, Any] = {"users": n, "latency_ms": latency * 1000}
    # Concurrency 1 costs changes x latency (about 4 minutes at 10k and 20 ms) and 4 a
    # quarter of it: they run once; the fast configurations run ``repeat`` times.
    # (The whole of scripts/bench all must fit in 15 minutes on a 2-core box.)
    reps = {1: 1, 4: 1, 8: min(repeat, 2)}
    cases = [(f"c{c}", c, False, reps.get(c, repeat)) for c in levels]
    cases.append(("bulk_c8", 8, True, repeat))
    for name, conc, bulk, reps in cases:
        samples = []
        for r in range(reps):
            log(f"apply {n} users, concurrency {conc}, bulk {'on' if bulk else 'off'}: "
                f"run {r + 1}/{reps}")
            samples.append(one(n, conc, bulk, latency))
        res = summarise(samples, ("apply_s", "apply_cpu_s"))
        last = samples[-1].out
        changes = last["changes"]
        res.update(concurrency=conc, bulk=bulk, changes=changes, counts=last["counts"],
                   requests=last["requests"], bulk_requests=last["bulk_requests"])
        res["cpu_ms_per_change"] = {k: v * 1000 / changes if k != "runs" else v
                                    for k, v in res["apply_cpu_s"].items()}
        results[name] = res
    base = results.get("c1", {}).get("apply_s", {}).get("median")
    for name in list(results):
        if isinstance(results[name], dict) and "apply_s" in results[name] and base:
            results[name]["speedup_vs_c1"] = base / results[name]["apply_s"]["median"]
    return results


def table(r: dict[str, Any]) -> list[str]:
    lines = [f"apply: {r['users']} users at {r['latency_ms']:.0f} ms per request",
             f"{'case':<10} {'apply wall':>24} {'speed-up':>8} {'client CPU':>22} "
             f"{'CPU/change':>11} {'requests':>9}"]
    for name, v in r.items():
        if not isinstance(v, dict):
            continue
        sp = v.get("speedup_vs_c1")
        lines.append(f"{name:<10} {fmt(v['apply_s']):>24} "
                     f"{(f'{sp:.1f}x' if sp else '-'):>8} {fmt(v['apply_cpu_s']):>22} "
                     f"{v['cpu_ms_per_change']['median']:>8.2f} ms "
                     f"{sum(v['requests'].values()):>9}")
    return lines


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        size = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
        print("\n".join(table(run(size, 1, levels=(1, 16)))))
