"""scripts/bench ldap: the ldap connector's full read vs ``ldapsearch`` in the same run.

Reuses scripts/bench_ldap.py (the LDAP connector author's script): its throwaway slapd
per size (``start``), the three ``ldapsearch -E pr=1000/noprompt`` dumps of exactly
what the connector asks for (``searches``), and its child program (``CHILD``: one
``LdapConnector.fetch`` with page size 1000, read + mapping + member resolution +
Snapshot.build). Here each side runs several times in fresh processes; the figure is
the median wall time, with the child's own CPU and peak RSS from wait4, and the ratio
to the ldapsearch median of the same run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import bench_ldap  # the LDAP author's benchmark: slapd start, searches, child
from bench_common import PYTHON, ROOT, Sample, fmt, log, run_child, summarise


def slapd(users: int) -> dict[str, str]:
    """The benchmark slapd for this size (1 group per 20 users), started or reused."""
    return bench_ldap.start(users, max(1, users // 20))


def ldapsearch_sample(env: dict[str, str]) -> Sample:
    """The three dumps, one after another; CPU and RSS of the ldapsearch processes."""
    base = ["ldapsearch", "-x", "-LLL", "-H", env["SLAPD_URL"], "-D", env["SLAPD_ADMIN_DN"],
            "-w", env["SLAPD_ADMIN_PASSWORD"], "-b", env["SLAPD_BASE_DN"],
            "-E", "pr=1000/noprompt"]
    wall = cpu = rss = 0.0
    for args in _searches():
        s = run_child(base + args)
        wall, cpu, rss = wall + s.wall, cpu + s.cpu, max(rss, s.rss_mb)
    return Sample(wall, cpu, rss)


def _searches() -> list[list[str]]:
    # The same filters and attributes as bench_ldap.ldapsearch (kept in step with it).
    return [
        ["(objectClass=person)", "entryUUID", "mail", "uid", "displayName", "cn", "givenName",
         "sn"],
        ["(&(objectClass=person)(pwdAccountLockedTime=*))", "1.1"],
        ["(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
         "entryUUID", "cn", "member", "uniqueMember", "memberUid"],
    ]


def connector_sample(env: dict[str, str], backend: str) -> Sample:
    s = run_child([PYTHON, "-c", bench_ldap.CHILD, json.dumps(env), backend])
    s.out.pop("stdout", None)
    return s


BACKENDS = (("python-ldap", "ldap"), ("ldap3", "ldap3"))


def backends() -> list[str]:
    """Both LDAP backends; one that does not import stops the benchmark, with the reason
    (a table without its row would read as if the backend had been measured)."""
    import subprocess

    for name, module in BACKENDS:
        res = subprocess.run([PYTHON, "-c", f"import {module}, dirconnector"],
                             capture_output=True, text=True)
        if res.returncode:
            last = (res.stderr.strip().splitlines() or ["no message"])[-1]
            raise SystemExit(f"bench ldap: cannot measure {name}: {PYTHON} cannot import "
                             f"{module}: {last} (scripts/_venv.sh dev,all,ldap-fast installs it)")
    return [name for name, _ in BACKENDS]


def run(sizes: list[int], repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    names = backends()
    for n in sizes:
        log(f"ldap {n}: starting slapd (loads {n} users once per size)")
        t0 = time.perf_counter()
        env = slapd(n)
        res: dict[str, Any] = {"users": n, "groups": n // 20,
                               "slapd_start_s": time.perf_counter() - t0}
        samples = []
        for r in range(repeat):
            log(f"ldap {n}: ldapsearch run {r + 1}/{repeat}")
            samples.append(ldapsearch_sample(env))
        res["ldapsearch"] = summarise(samples)
        base = res["ldapsearch"]["wall_s"]["median"]
        for backend in names:
            bs = []
            # ldap3 (pure Python) takes ~15 s per 100k read: two runs at large sizes.
            reps = min(repeat, 2) if backend == "ldap3" and n > 10_000 else repeat
            for r in range(reps):
                log(f"ldap {n}: {backend} run {r + 1}/{reps}")
                bs.append(connector_sample(env, backend))
            entry = summarise(bs, ("seconds",))
            entry["ratio"] = entry["wall_s"]["median"] / base
            entry["ratio_inner"] = entry["seconds"]["median"] / base
            entry["result"] = {k: bs[-1].out.get(k) for k in ("users", "groups")}
            res[backend] = entry
        results[str(n)] = res
    return results


def table(results: dict[str, Any]) -> list[str]:
    lines = [f"{'size':>8} {'reader':<12} {'wall (process)':>22} {'fetch()':>22} "
             f"{'CPU':>22} {'peak RSS':>18} {'ratio':>6}"]
    for n, r in results.items():
        ls = r["ldapsearch"]
        lines.append(f"{int(n):>8} {'ldapsearch':<12} {fmt(ls['wall_s']):>22} {'-':>22} "
                     f"{fmt(ls['cpu_s']):>22} {fmt(ls['rss_mb'], ' MB', 0):>18} {1.0:>6.2f}")
        for backend in ("python-ldap", "ldap3"):
            if backend not in r:
                continue
            b = r[backend]
            lines.append(f"{'':>8} {backend:<12} {fmt(b['wall_s']):>22} "
                         f"{fmt(b.get('seconds')):>22} {fmt(b['cpu_s']):>22} "
                         f"{fmt(b['rss_mb'], ' MB', 0):>18} {b['ratio']:>6.2f}")
    return lines


if __name__ == "__main__":
    os.chdir(ROOT)
    print("\n".join(table(run([int(x) for x in (sys.argv[1:] or ["10000"])], 1))))
