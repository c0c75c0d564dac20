"""scripts/bench watch: ``dirconnector watch`` from slapd (RFC 4533) to a Bulk SCIM server.

For each size: a fresh slapd of its own (scripts/servers/slapd, 1 group per 20 users;
stopped and removed at the end, so the shared benchmark slapd is not changed) and
tests/emulators/scimlat with Bulk at 0 ms. One ``dirconnector watch`` child process:
- ``start``: until its first full sync has saved the stream position;
- ``idle``: CPU of the watching process over ``--watch-idle`` seconds (60) while nothing
  changes, and its RSS before and after;
- ``lag``: 50 mixed changes one after another (create, disable, rename, email change,
  group add, group remove, nested group move, delete), each timed from ``ldapmodify``'s
  exit (the write acknowledged) to the server holding the result, polled every 20 ms;
  CPU of the watching process over the 50, per change;
- ``burst``: 1,000 users created and added to a group in one ``ldapmodify``: time until
  the server holds all of them in the group, requests the server saw (writes and reads),
  CPU of the watching process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import ROOT, log
from bench_e2e import DIRCONNECTOR, ScimSide

SLAPD = ROOT / "scripts" / "servers" / "slapd"
BASE = "dc=example,dc=com"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
KINDS = ("create", "disable", "rename", "email", "group_add", "group_remove", "nested_move",
         "delete")
CHANGES, BURST = 50, 1000


def _uid(i: int) -> str:
    return f"u{i:06d}"


def _mailed(i: int) -> bool:
    """Active, with mail, in the generated directory (scripts/servers/ldapdata.py)."""
    return i % 10 != 3 and i % 25 != 7 and i >= 100


def _cpu(pid: int) -> float:
    """User + system seconds of ``pid`` so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Scim:
    """Reads of the SCIM emulator, to see when a change has arrived."""

    def __init__(self, side: ScimSide, token: str) -> None:
        self.url, self.token = side.url, token
        self.calls = 0
        """Requests this poller sent (not the watcher's: taken off the server's count)."""

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        self.calls += 1
        q = urllib.parse.urlencode(params)
        req = urllib.request.Request(f"{self.url}/{path}?{q}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return dict(json.loads(r.read()))

    def user(self, email: str) -> dict[str, Any] | None:
        res = self.get("Users", filter=f'userName eq "{email}"')["Resources"]
        return res[0] if res else None

    def members(self, group: str) -> set[str]:
        res = self.get("Groups", filter=f'displayName eq "{group}"')["Resources"]
        return {m["value"] for m in (res[0].get("members") or [])} if res else set()


def _modify(env: dict[str, str], ldif: str) -> float:
    """Apply ``ldif`` as the admin; the time ldapmodify returned (the write acknowledged)."""
    subprocess.run(["ldapmodify", "-x", "-H", env["SLAPD_URL"], "-D", env["SLAPD_ADMIN_DN"],
                    "-w", env["SLAPD_ADMIN_PASSWORD"]], input=ldif.encode(), check=True,
                   capture_output=True)
    return time.monotonic()


def _until(check: Any, timeout: float = 60.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic()
        time.sleep(0.02)
    raise SystemExit("bench watch: a change did not reach the server within "
                     f"{timeout:.0f} s")


def _positioned(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        with sqlite3.connect(db) as c:
            rows = c.execute("select * from connector_state").fetchall()
    except sqlite3.Error:
        return False
    return any("stream_position" in str(r) for r in rows)


def _change(k: int, n: int, env: dict[str, str], scim: Scim) -> float:
    """One change of kind KINDS[k % 8]; the seconds from its ack to the server holding it."""
    kind = KINDS[k % len(KINDS)]
    groups = max(1, n // 20)
    i = next(j for j in range(200 + 13 * k, n) if _mailed(j))   # a user of its own
    uid, email = _uid(i), f"{_uid(i)}@example.com"
    dept = f"dept-{i % groups:05d}"
    other = f"dept-{(i + 1) % groups:05d}"
    if kind == "create":
        new = f"w{k}"
        at = _modify(env, f"dn: uid={new},{PEOPLE}\nchangetype: add\nobjectClass: "
                          f"inetOrgPerson\nuid: {new}\ncn: W {k}\nsn: W\n"
                          f"mail: {new}@example.com\n")
        done = _until(lambda: scim.user(f"{new}@example.com") is not None)
    elif kind == "disable":
        at = _modify(env, f"dn: uid={uid},{PEOPLE}\nchangetype: modify\nadd: "
                          f"pwdAccountLockedTime\npwdAccountLockedTime: 20240101000000Z\n")
        done = _until(lambda: (scim.user(email) or {}).get("active") is False)
    elif kind == "rename":
        at = _modify(env, f"dn: uid={uid},{PEOPLE}\nchangetype: modrdn\nnewrdn: uid=r{uid}\n"
                          f"deleteoldrdn: 1\n\ndn: uid=r{uid},{PEOPLE}\nchangetype: modify\n"
                          f"replace: displayName\ndisplayName: Renamed {k}\n")
        done = _until(lambda: (scim.user(email) or {}).get("displayName") == f"Renamed {k}")
    elif kind == "email":
        at = _modify(env, f"dn: uid={uid},{PEOPLE}\nchangetype: modify\nreplace: mail\n"
                          f"mail: changed{k}@example.com\n")
        done = _until(lambda: scim.user(f"changed{k}@example.com") is not None)
    elif kind in ("group_add", "group_remove"):
        ref = str((scim.user(email) or {}).get("id"))
        target = other if kind == "group_add" else dept
        op = "add" if kind == "group_add" else "delete"
        at = _modify(env, f"dn: cn={target},{GROUPS}\nchangetype: modify\n{op}: member\n"
                          f"member: uid={uid},{PEOPLE}\n")
        done = _until(lambda: (ref in scim.members(target)) == (kind == "group_add"))
    elif kind == "nested_move":
        # dept (with its members) nested into other: other's flattened membership grows.
        ref = str((scim.user(email) or {}).get("id"))
        at = _modify(env, f"dn: cn={other},{GROUPS}\nchangetype: modify\nadd: member\n"
                          f"member: cn={dept},{GROUPS}\n")
        done = _until(lambda: ref in scim.members(other))
    else:
        at = _modify(env, f"dn: uid={uid},{PEOPLE}\nchangetype: delete\n")
        done = _until(lambda: (scim.user(email) or {}).get("active") is False)
    return done - at


def run_size(n: int, idle: float) -> dict[str, Any]:
    res: dict[str, Any] = {}
    run_root = Path(os.environ.get("DIRCONNECTOR_RUN_DIR", "/tmp"))
    run_dir = run_root / f"bench-watch-slapd-{n}"
    log(f"watch {n}: loading {n} users and {n // 20} groups into a slapd of its own")
    subprocess.run([sys.executable, str(SLAPD), "start", "--fresh", "--run-dir", str(run_dir),
                    "--users", str(n), "--groups", str(max(1, n // 20))], check=True,
                   capture_output=True)
    env = dict(json.loads((run_dir / "env.json").read_text()))
    side = ScimSide(0.0)
    proc = None
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="dirconnector-bench-watch-")))
            errlog = stack.enter_context((tmp / "log").open("w"))
            config = tmp / "config.toml"
            config.write_text(f"""
profile = "bench"
[source]
type = "ldap"
url = "{env['SLAPD_URL']}"
bind_dn = "{env['SLAPD_ADMIN_DN']}"
password_env = "BENCH_LDAP_PASSWORD"
backend = "python-ldap"
page_size = 1000
timeout = 300
disabled_filter = "(pwdAccountLockedTime=*)"
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
            penv = dict(os.environ, BENCH_LDAP_PASSWORD=env["SLAPD_ADMIN_PASSWORD"],
                        **side.env())
            scim = Scim(side, side.env()["BENCH_SCIM_TOKEN"])
            t0 = time.monotonic()
            proc = subprocess.Popen([DIRCONNECTOR, "--config", str(config), "--log-format",
                                     "json", "watch"], env=penv, stderr=errlog)
            log(f"watch {n}: first full sync")
            _until(lambda: _positioned(tmp / "state.db"), 900)
            res["start_s"] = time.monotonic() - t0
            res["start_cpu_s"] = _cpu(proc.pid)
            time.sleep(2)
            log(f"watch {n}: idle for {idle:.0f} s")
            rss0, cpu0 = _rss_mb(proc.pid), _cpu(proc.pid)
            time.sleep(idle)
            cpu1, rss1 = _cpu(proc.pid), _rss_mb(proc.pid)
            res["idle"] = {"seconds": idle, "cpu_s": cpu1 - cpu0,
                           "core_share": (cpu1 - cpu0) / idle, "rss_mb_before": rss0,
                           "rss_mb_after": rss1}
            log(f"watch {n}: {CHANGES} mixed changes, one at a time")
            lags: dict[str, list[float]] = {k: [] for k in KINDS}
            cpu0 = _cpu(proc.pid)
            for k in range(CHANGES):
                lags[KINDS[k % len(KINDS)]].append(_change(k, n, env, scim))
            time.sleep(1.5)                  # the last batch's post-read and save
            cpu1 = _cpu(proc.pid)
            every = sorted(x for v in lags.values() for x in v)
            res["lag"] = {"p50_s": statistics.median(every),
                          "p95_s": every[max(0, round(0.95 * len(every)) - 1)],
                          "max_s": every[-1], "by_kind_max_s": {k: max(v) for k, v in
                                                                lags.items() if v},
                          "cpu_s": cpu1 - cpu0, "cpu_per_change_s": (cpu1 - cpu0) / CHANGES}
            log(f"watch {n}: burst of {BURST} creates and one group edit")
            side.requests()                  # reset the counts
            scim.calls = 0
            ldif = "".join(f"dn: uid=b{j},{PEOPLE}\nchangetype: add\nobjectClass: "
                           f"inetOrgPerson\nuid: b{j}\ncn: B {j}\nsn: B\n"
                           f"mail: b{j}@example.com\n\n" for j in range(BURST))
            ldif += (f"dn: cn=dept-00000,{GROUPS}\nchangetype: modify\nadd: member\n"
                     + "".join(f"member: uid=b{j},{PEOPLE}\n" for j in range(BURST)))
            before = len(scim.members("dept-00000"))
            scim.calls = 0
            cpu0 = _cpu(proc.pid)
            sent = time.monotonic()
            at = _modify(env, ldif)

            def all_in() -> bool:
                return len(scim.members("dept-00000")) >= before + BURST

            done = _until(all_in, 300)
            time.sleep(1.5)
            seen = side.requests()
            seen["requests"] -= scim.calls   # the watcher's requests only (reads included)
            res["burst"] = {"changes": BURST + 1, "seconds": done - at,
                            "seconds_from_send": done - sent,
                            "cpu_s": _cpu(proc.pid) - cpu0, **seen}
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            res["exit_code"] = proc.returncode
            proc = None
    finally:
        if proc is not None:
            proc.kill()
        side.close()
        subprocess.run([sys.executable, str(SLAPD), "stop", "--run-dir", str(run_dir)],
                       check=False, capture_output=True)
    return res


def run(sizes: list[int], idle: float = 60.0) -> dict[str, Any]:
    return {str(n): run_size(n, idle) for n in sizes}


def table(results: dict[str, Any]) -> list[str]:
    lines = []
    for n, r in results.items():
        if not n.isdigit():
            continue
        lag, idle, burst = r["lag"], r["idle"], r["burst"]
        lines += [
            f"{int(n):>8} users: first full sync {r['start_s']:.1f} s",
            f"{'':>8} lag over {CHANGES} mixed changes: p50 {lag['p50_s']:.2f} s, p95 "
            f"{lag['p95_s']:.2f} s, max {lag['max_s']:.2f} s; CPU "
            f"{lag['cpu_per_change_s']:.3f} s per change",
            f"{'':>8} worst per kind: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                     lag["by_kind_max_s"].items()),
            f"{'':>8} burst of {burst['changes']} changes: {burst['seconds']:.1f} s after the "
            f"ack ({burst['seconds_from_send']:.1f} s after ldapmodify started), "
            f"{burst['writes']} writes / {burst['requests']} requests, CPU "
            f"{burst['cpu_s']:.1f} s",
            f"{'':>8} idle {idle['seconds']:.0f} s: {idle['core_share']:.2%} of a core, RSS "
            f"{idle['rss_mb_before']:.0f} -> {idle['rss_mb_after']:.0f} MB",
        ]
    return lines


if __name__ == "__main__":
    sizes = [int(x) for x in (sys.argv[1:] or ["10000"])]
    print("\n".join(table(run(sizes, float(os.environ.get("BENCH_WATCH_IDLE", "60"))))))
