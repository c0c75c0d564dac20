#!/usr/bin/env python3
"""Measure the ldap connector against `ldapsearch` on the same throwaway slapd.

    .venv/bin/python scripts/bench_ldap.py --users 10000 --groups 500
    .venv/bin/python scripts/bench_ldap.py --users 100000 --groups 5000

Starts slapd (scripts/servers/slapd) with generated data in its own run directory,
then times, best of --repeat runs, each in a fresh process:
- ldapsearch -E pr=1000/noprompt dumping the users and the groups with the
  attributes the connector asks for (output to /dev/null);
- the connector's full fetch (read + mapping + member resolution + Snapshot.build)
  with python-ldap and with ldap3, page_size 1000, and each one's peak RSS.
Prints one table with the ratios to ldapsearch. Not a test: numbers depend on the box.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLAPD = ROOT / "scripts" / "servers" / "slapd"

CHILD = r"""
import json, resource, sys, time
from dirconnector.connectors.ldap.connector import LdapConnector, LdapSettings
from dirconnector.state_space import ConnectorState
env = json.loads(sys.argv[1])
s = LdapSettings(type="ldap", url=env["SLAPD_URL"], bind_dn=env["SLAPD_ADMIN_DN"],
                 password=env["SLAPD_ADMIN_PASSWORD"], backend=sys.argv[2], page_size=1000,
                 disabled_filter="(pwdAccountLockedTime=*)", timeout=120)
t, c = time.perf_counter(), time.process_time()
snap = LdapConnector(s).fetch(ConnectorState())
seconds, cpu = time.perf_counter() - t, time.process_time() - c
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "cpu": cpu, "users": len(snap.users),
                  "groups": len(snap.groups), "rss_mb": rss}))
"""


STARTED: list[Path] = []
"""Run directories of the slapd servers this process started (not found running)."""


def running(run_dir: Path) -> bool:
    try:
        os.kill(int((run_dir / "slapd.pid").read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def stop_started() -> None:
    """Stop the slapd servers this process started; their data stays for the next run."""
    while STARTED:
        run_dir = STARTED.pop()
        subprocess.run([sys.executable, str(SLAPD), "stop", "--keep", "--run-dir",
                        str(run_dir)], check=False, capture_output=True)


def start(users: int, groups: int) -> dict[str, str]:
    run_dir = Path(os.environ.get("DIRCONNECTOR_RUN_DIR", "/tmp")) / f"bench-slapd-{users}"
    if not running(run_dir) and run_dir not in STARTED:
        STARTED.append(run_dir)
    env_file = run_dir / "env.json"
    if env_file.is_file():
        env = json.loads(env_file.read_text())
        if env.get("SLAPD_USERS") == str(users) and env.get("SLAPD_GROUPS") == str(groups):
            subprocess.run([sys.executable, str(SLAPD), "start", "--run-dir", str(run_dir),
                            "--users", str(users), "--groups", str(groups)],
                           check=True, capture_output=True)
            return dict(json.loads(env_file.read_text()))
    print(f"loading {users} users and {groups} groups into slapd ...", file=sys.stderr)
    subprocess.run([sys.executable, str(SLAPD), "start", "--fresh", "--run-dir", str(run_dir),
                    "--users", str(users), "--groups", str(groups)], check=True,
                   capture_output=True)
    return dict(json.loads(env_file.read_text()))


def ldapsearch(env: dict[str, str]) -> dict[str, float]:
    """Dump what the connector reads: users (12 attributes), locked DNs, groups."""
    base = ["ldapsearch", "-x", "-LLL", "-H", env["SLAPD_URL"], "-D", env["SLAPD_ADMIN_DN"],
            "-w", env["SLAPD_ADMIN_PASSWORD"], "-b", env["SLAPD_BASE_DN"],
            "-E", "pr=1000/noprompt"]
    searches = [
        ["(objectClass=person)", "entryUUID", "mail", "uid", "displayName", "cn", "givenName",
         "sn"],
        ["(&(objectClass=person)(pwdAccountLockedTime=*))", "1.1"],
        ["(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
         "entryUUID", "cn", "member", "uniqueMember", "memberUid"],
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    for args in searches:
        subprocess.run(base + args, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"seconds": time.perf_counter() - t, "cpu": cpu}


def connector(env: dict[str, str], backend: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(env), backend],
                         check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return dict(json.loads(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="python-ldap,ldap3")
    args = parser.parse_args(argv)
    env = start(args.users, args.groups)
    backends = args.backends.split(",")
    runs: dict[str, list[dict[str, float]]] = {"ldapsearch": [], **{b: [] for b in backends}}
    for _ in range(args.repeat):  # interleaved, so a busy moment hurts every reader alike
        runs["ldapsearch"].append(ldapsearch(env))
        for backend in backends:
            runs[backend].append(connector(env, backend))
    best = {name: min(r, key=lambda x: x["seconds"]) for name, r in runs.items()}
    base = best["ldapsearch"]
    print(f"{args.users} users, {args.groups} groups (+16 special groups), page size 1000, "
          f"best of {args.repeat}, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    print(f"{'reader':<12} {'seconds':>8} {'ratio':>6} {'client CPU s':>13} {'peak MB':>8}  result")
    print(f"{'ldapsearch':<12} {base['seconds']:8.2f} {1.0:6.2f} {base['cpu']:13.2f} {'-':>8}")
    for backend in backends:
        b = best[backend]
        print(f"{backend:<12} {b['seconds']:8.2f} {b['seconds'] / base['seconds']:6.2f} "
              f"{b['cpu']:13.2f} {max(r['rss_mb'] for r in runs[backend]):8.0f}  "
              f"{b['users']:.0f} users, {b['groups']:.0f} groups")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
