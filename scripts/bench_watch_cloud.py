"""scripts/bench watch --watch-sources entra: ``dirconnector watch`` from the Graph emulator.

The emulator (tests/emulators/graph, HTTPS with its own CA, msal client credentials) runs
in this process, seeded with N users and N/20 groups of 20 direct members through its
Directory methods (the time is reported: ``seed_s``). The target is tests/emulators/scimlat
with Bulk at 0 ms in its own process. One ``dirconnector watch`` child process with
``poll_interval = "1s"``:
- ``start``: until its first full read has saved the stream position;
- ``idle``: CPU of the watching process over ``--watch-idle`` seconds while nothing changes,
  RSS before and after, and the Graph requests it sent (per quiet poll: goal 2);
- ``lag``: 50 mixed changes made in the emulator one after another (create, disable,
  rename, email change, group add, group remove, nested group move, delete), each timed
  from the emulator holding it (the write acknowledged) to the SCIM server holding the
  result, polled every 20 ms; CPU of the watching process over the 50, per change.
The emulator answers from threads of this process: its CPU is not the watcher's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import ROOT, log
from bench_e2e import DIRCONNECTOR, ScimSide
from bench_watch import CHANGES, KINDS, Scim, _cpu, _positioned, _rss_mb, _until

sys.path.insert(0, str(ROOT))

CLIENT_ID = "00001111-aaaa-2222-bbbb-3333cccc4444"
SECRET = "bench-entra-secret-never-logged"
POLL = 1.0


def _oid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def _gid(g: int) -> str:
    return f"00000000-0000-4000-9000-{g:012d}"


def _by_external(scim: Scim, oid: str) -> dict[str, Any] | None:
    res = scim.get("Users", filter=f'externalId eq "{oid}"')["Resources"]
    return res[0] if res else None


def _email(user: dict[str, Any] | None) -> str:
    mails = (user or {}).get("emails") or []
    return str(mails[0].get("value")) if mails else ""


def seed(directory: Any, n: int) -> float:
    """N users (mail = UPN = uNNNNNN@contoso.com) and N/20 groups of 20; the seconds taken."""
    t0 = time.perf_counter()
    for i in range(n):
        mail = f"u{i:06d}@contoso.com"
        directory.add_user(mail, f"User {i:06d}", upn=mail, user_id=_oid(i))
    for g in range(max(1, n // 20)):
        directory.add_group(f"dept-{g:05d}", [_oid(i) for i in range(g * 20, min(n, g * 20 + 20))],
                            group_id=_gid(g))
    return time.perf_counter() - t0


def _change(k: int, n: int, directory: Any, scim: Scim) -> float:
    """One change of kind KINDS[k % 8]; the seconds from the emulator holding it to the
    SCIM server holding the result."""
    kind = KINDS[k % len(KINDS)]
    groups = max(1, n // 20)
    i = 200 + 13 * k                      # a user of its own, in group i // 20
    oid = _oid(i)
    dept, other = _gid(i // 20), _gid((i // 20 + 7) % groups)
    if kind == "create":
        new = f"w{k}@contoso.com"
        nid = directory.add_user(new, f"W {k}", upn=new)
        at = time.monotonic()
        done = _until(lambda: _by_external(scim, nid) is not None)
    elif kind == "disable":
        directory.disable_user(oid)
        at = time.monotonic()
        done = _until(lambda: (_by_external(scim, oid) or {}).get("active") is False)
    elif kind == "rename":
        directory.update_user(oid, displayName=f"Renamed {k}")
        at = time.monotonic()
        done = _until(lambda: (_by_external(scim, oid) or {}).get("displayName")
                      == f"Renamed {k}")
    elif kind == "email":
        directory.update_user(oid, mail=f"changed{k}@contoso.com")
        at = time.monotonic()
        done = _until(lambda: _email(_by_external(scim, oid)) == f"changed{k}@contoso.com")
    elif kind in ("group_add", "group_remove"):
        ref = str((_by_external(scim, oid) or {}).get("id"))
        target = other if kind == "group_add" else dept
        name = f"dept-{int(target[-12:]):05d}"
        if kind == "group_add":
            directory.add_member(target, oid)
        else:
            directory.remove_member(target, oid)
        at = time.monotonic()
        done = _until(lambda: (ref in scim.members(name)) == (kind == "group_add"))
    elif kind == "nested_move":
        # dept (with its members) nested into other: other's flattened membership grows.
        ref = str((_by_external(scim, oid) or {}).get("id"))
        directory.add_member(other, dept)
        at = time.monotonic()
        name = f"dept-{int(other[-12:]):05d}"
        done = _until(lambda: ref in scim.members(name))
    else:
        directory.soft_delete_user(oid)
        at = time.monotonic()
        done = _until(lambda: (_by_external(scim, oid) or {}).get("active") is not True)
    return done - at


def entra_size(n: int, idle: float) -> dict[str, Any]:
    from tests.emulators.graph import GraphEmulator

    res: dict[str, Any] = {"source": "entra", "poll_interval_s": POLL}
    side = ScimSide(0.0)
    proc = None
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="dirconnector-bench-watch-entra-")))
            em = stack.enter_context(GraphEmulator(tmp))
            em.register_app(CLIENT_ID, secret=SECRET,
                            roles={"User.Read.All", "GroupMember.Read.All"})
            log(f"watch entra {n}: seeding {n} users and {n // 20} groups in the emulator")
            res["seed_s"] = seed(em.directory, n)
            errlog = stack.enter_context((tmp / "log").open("w"))
            config = tmp / "config.toml"
            config.write_text(f"""
profile = "bench"
[source]
type = "azure"
tenant_id = "{em.tenant_id}"
client_id = "{CLIENT_ID}"
client_secret_env = "BENCH_ENTRA_SECRET"
authority_host = "{em.origin}"
graph_url = "{em.origin}"
ca_file = "{em.ca_file}"
poll_interval = "{POLL:g}s"
{side.target()}
[sync]
remove_missing = true
max_revocations = 1000000
max_revocation_ratio = 1.0
max_membership_removals = 1000000
max_membership_removal_ratio = 1.0
batch_window = "1s"
[state]
path = "{tmp / 'state.db'}"
""")
            config.chmod(0o600)
            penv = dict(os.environ, BENCH_ENTRA_SECRET=SECRET, **side.env())
            scim = Scim(side, side.env()["BENCH_SCIM_TOKEN"])
            em.reset_log()
            t0 = time.monotonic()
            proc = subprocess.Popen([DIRCONNECTOR, "--config", str(config), "--log-format",
                                     "json", "watch"], env=penv, stderr=errlog)
            log(f"watch entra {n}: first full read")
            _until(lambda: _positioned(tmp / "state.db"), 1800)
            res["start_s"] = time.monotonic() - t0
            res["start_cpu_s"] = _cpu(proc.pid)
            res["start_graph_requests"] = len(em.graph_calls())
            time.sleep(3)
            log(f"watch entra {n}: idle for {idle:.0f} s")
            em.reset_log()
            rss0, cpu0, t1 = _rss_mb(proc.pid), _cpu(proc.pid), time.monotonic()
            time.sleep(idle)
            cpu1, rss1, t2 = _cpu(proc.pid), _rss_mb(proc.pid), time.monotonic()
            calls = em.graph_calls()
            paths = sorted({c.path for c in calls})
            res["idle"] = {"seconds": idle, "cpu_s": cpu1 - cpu0,
                           "core_share": (cpu1 - cpu0) / idle, "rss_mb_before": rss0,
                           "rss_mb_after": rss1, "graph_requests": len(calls),
                           "paths": paths,
                           "requests_per_poll": len(calls) / max(1.0, (t2 - t1) / POLL)}
            log(f"watch entra {n}: {CHANGES} mixed changes, one at a time")
            lags: dict[str, list[float]] = {k: [] for k in KINDS}
            cpu0 = _cpu(proc.pid)
            for k in range(CHANGES):
                lags[KINDS[k % len(KINDS)]].append(_change(k, n, em.directory, scim))
            time.sleep(1.5)
            cpu1 = _cpu(proc.pid)
            every = sorted(x for v in lags.values() for x in v)
            res["lag"] = {"p50_s": statistics.median(every),
                          "p95_s": every[max(0, round(0.95 * len(every)) - 1)],
                          "max_s": every[-1], "by_kind_max_s": {k: max(v) for k, v in
                                                                lags.items() if v},
                          "cpu_s": cpu1 - cpu0, "cpu_per_change_s": (cpu1 - cpu0) / CHANGES}
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            res["exit_code"] = proc.returncode
            proc = None
    finally:
        if proc is not None:
            proc.kill()
        side.close()
    return res


def table(results: dict[str, Any]) -> list[str]:
    lines = []
    for n, r in results.items():
        if not n.isdigit():
            continue
        lag, idle = r["lag"], r["idle"]
        head = f"{int(n):>8} users, {r['source']}"
        if "seed_s" in r:
            head += f": seeded in {r['seed_s']:.1f} s;"
        lines += [
            f"{head} first full read {r['start_s']:.1f} s ({r['start_cpu_s']:.1f} s CPU)",
            f"{'':>8} lag over {CHANGES} mixed changes: p50 {lag['p50_s']:.2f} s, p95 "
            f"{lag['p95_s']:.2f} s, max {lag['max_s']:.2f} s; CPU "
            f"{lag['cpu_per_change_s']:.3f} s per change",
            f"{'':>8} worst per kind: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                     lag["by_kind_max_s"].items()),
            f"{'':>8} idle {idle['seconds']:.0f} s: {idle['core_share']:.2%} of a core, RSS "
            f"{idle['rss_mb_before']:.0f} -> {idle['rss_mb_after']:.0f} MB"
            + (f", {idle['requests_per_poll']:.1f} Graph requests per quiet poll"
               if "requests_per_poll" in idle else ""),
        ]
    return lines


def run(source: str, sizes: list[int], idle: float = 60.0) -> dict[str, Any]:
    """``{size: figures}`` of one source (entra, ad)."""
    if source == "entra":
        return {str(n): entra_size(n, idle) for n in sizes}
    raise SystemExit(f"bench watch: unknown --watch-sources entry {source!r} (ldap, entra)")


if __name__ == "__main__":
    import json

    sizes = [int(x) for x in (sys.argv[1:] or ["10000"])]
    source = os.environ.get("BENCH_WATCH_SOURCE", "entra")
    res = run(source, sizes, float(os.environ.get("BENCH_WATCH_IDLE", "60")))
    print("\n".join(table(res)))
    print(json.dumps(res, indent=1, default=str))
