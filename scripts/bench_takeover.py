"""scripts/bench takeover: taking over an organization bwdc provisioned, as processes.

For each size: the benchmark slapd (scripts/bench_ldap.py), and the Bitwarden-compatible
test server (threads of this process) seeded as bwdc leaves it after a sync of that
slapd (tests/emulators/bwdc: bwdc's rules, members keyed on their DN, Staged, its
largeImport batches). Then what an administrator runs, each a child process timed
for wall, CPU and peak RSS:
- ``import-bwdc`` on bwdc's data.json (the profile, ``takeover_from = "bwdc"``);
- ``plan``: the takeover report (every member and group a relink);
- ``sync``: the relinks (a read and a PUT per member, a PUT per group) and the rest;
- ``plan`` again: must be empty.
The server's requests are counted per step; the sync must end with 0 failed.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import ROOT, Sample, log, run_child, summarise
from bench_ldapread import slapd

sys.path.insert(0, str(ROOT))
DIRCONNECTOR = str(ROOT / ".venv" / "bin" / "dirconnector")
SYNC: dict[str, Any] = {
    "groups": True, "userPath": "ou=people", "userObjectClass": "inetOrgPerson",
    "userEmailAttribute": "mail", "groupPath": "ou=groups", "groupObjectClass": "groupOfNames",
    "groupNameAttribute": "cn", "memberAttribute": "member", "largeImport": True,
    "removeDisabled": False, "overwriteExisting": False, "inviteUsersAfterProvisioning": False}
APPLIED = re.compile(r"Applied (\d+) of (\d+) change\(s\); (\d+) failed")


def _step(args: list[str], env: dict[str, str], server: Any) -> Sample:
    server.clear_log()
    s = run_child([DIRCONNECTOR, *args], env=env)
    reqs = list(server.requests)
    s.out["requests"] = len(reqs)
    s.out["writes"] = sum(1 for r in reqs if r.method != "GET" and "/connect/token" not in r.path)
    out = str(s.out.pop("stdout", ""))
    found = APPLIED.search(out)
    if found:
        s.out["applied"], s.out["changes"], s.out["failed"] = map(int, found.groups())
    s.out["empty"] = "No changes. The server matches the directory." in out
    return s


def run_size(n: int) -> dict[str, Any]:
    from tests.emulators import bwdc
    from tests.emulators.bitwarden.server import BitwardenServer

    env = slapd(n)
    server = BitwardenServer()
    server.start()
    try:
        server.add_owner("owner@example.com")
        t0 = time.perf_counter()
        groups, users = bwdc.ldap_entries(env["SLAPD_URL"], env["SLAPD_ADMIN_DN"],
                                          env["SLAPD_ADMIN_PASSWORD"], env["SLAPD_BASE_DN"],
                                          SYNC, ad=False)
        bodies = bwdc.bwdc_requests(groups, users, SYNC)
        bwdc.seed(server, bodies)
        seeded = time.perf_counter() - t0
        log(f"takeover {n}: bwdc's sync seeded {len(server.org.members) - 1} members and "
            f"{len(server.org.groups)} groups in {len(bodies)} imports ({seeded:.0f} s)")
        with tempfile.TemporaryDirectory(prefix="dirconnector-bench-") as tmpdir:
            tmp = Path(tmpdir)
            host, port = env["SLAPD_URL"].removeprefix("ldap://").split(":")
            data = bwdc.data_json(server, 0, "directoryLdap", {
                "hostname": host, "port": int(port), "ssl": False, "startTls": False,
                "rootPath": env["SLAPD_BASE_DN"], "username": env["SLAPD_ADMIN_DN"],
                "ad": False, "pagedSearch": True}, SYNC)
            (tmp / "data.json").write_text(json.dumps(data))
            profile = tmp / "dirconnector.toml"
            child_env = dict(os.environ, LDAP_BIND_PASSWORD=env["SLAPD_ADMIN_PASSWORD"],
                             BW_CLIENTSECRET=server.client_secret)
            res: dict[str, Any] = {"members": len(server.org.members) - 1,
                                   "groups": len(server.org.groups), "seed_s": seeded}
            imp = run_child([DIRCONNECTOR, "import-bwdc", str(tmp / "data.json"), "--out",
                             str(profile)], env=child_env)
            imp.out.pop("stdout", None)
            res["import_bwdc"] = summarise([imp])
            text = profile.read_text().replace("[target]\n", "[target]\ntimeout = 300\n")
            text = text.replace("[source]\n", "[source]\npage_size = 1000\ntimeout = 300\n")
            text += f'\n[state]\npath = "{tmp / "state.db"}"\n'

            profile.write_text(text)
            for name, args in (("plan", ["plan"]), ("sync", ["sync"]), ("plan_after", ["plan"])):
                log(f"takeover {n}: {name}")
                s = _step(["--config", str(profile), *args], child_env, server)
                res[name] = {**summarise([s]), **{k: s.out[k] for k in
                                                  ("requests", "writes", "empty", "applied",
                                                   "changes", "failed") if k in s.out}}
            return res
    finally:
        server.stop()


def run(sizes: list[int], repeat: int) -> dict[str, Any]:
    del repeat               # one takeover per size: it changes the server it measures
    return {str(n): run_size(n) for n in sizes}


def table(results: dict[str, Any]) -> list[str]:
    lines = [f"{'size':>8} {'step':<11} {'wall':>12} {'CPU':>12} {'peak RSS':>10}  "
             f"requests / writes  outcome"]
    for n, r in results.items():
        for step in ("import_bwdc", "plan", "sync", "plan_after"):
            f = r[step]
            outcome = ""
            if step == "sync":
                outcome = f"{f.get('applied')} of {f.get('changes')} applied, " \
                          f"{f.get('failed')} failed"
            elif step.startswith("plan"):
                outcome = "empty" if f.get("empty") else "changes"
            lines.append(f"{int(n):>8} {step:<11} {f['wall_s']['median']:>11.2f}s "
                         f"{f['cpu_s']['median']:>11.2f}s "
                         f"{f['rss_mb']['median']:>7.0f} MB  "
                         f"{f.get('requests', '-')} / {f.get('writes', '-')}  {outcome}")
        lines.append(f"{int(n):>8} (bwdc left {r['members']} members and {r['groups']} groups; "
                     f"seeding took {r['seed_s']:.0f} s)")
    return lines


if __name__ == "__main__":
    print("\n".join(table(run([int(x) for x in (sys.argv[1:] or ["10000"])], 1))))
