"""scripts/bench e2e: ``dirconnector sync`` as a whole process, slapd to a test server.

For each size: the benchmark slapd (scripts/bench_ldap.py, 1 group per 20 users), the
LDAP backend ``auto`` picks (python-ldap when installed: the fastest), and two targets:
- ``bitwarden``: tests/emulators/bitwarden (the Bitwarden-compatible server: identity,
  Public API import, revoke), run on threads of this benchmark process;
- ``scim``: tests/emulators/scimlat with Bulk (``--e2e-latency``, 0 ms by default, so
  the figure is our cost, not the network's), in its own process.
Figures, each a fresh ``dirconnector --config C sync`` child (wall, CPU, peak RSS):
- ``full``: first sync into an empty server with a fresh state file (server restarted
  per run);
- ``noop``: the same sync again with nothing changed: must send zero writes (the
  requests the server saw are counted);
- ``one_change``: one more user locked in slapd (pwdAccountLockedTime) per round, then
  sync: must send exactly one write (the revoke); the users are unlocked at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import ROOT, Sample, fmt, log, run_child, summarise
from bench_ldapread import slapd

sys.path.insert(0, str(ROOT))
DIRCONNECTOR = str(ROOT / ".venv" / "bin" / "dirconnector")
SCIM_TOKEN = "bench-token"
# Active users with mail (scripts/servers/ldapdata.py: i % 10 != 3, i % 25 != 7); round r
# of the one-change figure locks the r-th, so no restoring sync is needed between rounds.
LOCK_UIDS = ("u000000", "u000001", "u000002", "u000004", "u000005")
LOCKED_UID = LOCK_UIDS[0]


def _ldif_lock(env: dict[str, str], lock: bool, uid: str = LOCKED_UID) -> None:
    dn = f"uid={uid},ou=people,{env['SLAPD_BASE_DN']}"
    change = ("add: pwdAccountLockedTime\npwdAccountLockedTime: 20240101000000Z\n" if lock
              else "delete: pwdAccountLockedTime\n")
    ldif = f"dn: {dn}\nchangetype: modify\n{change}"
    subprocess.run(["ldapmodify", "-x", "-H", env["SLAPD_URL"], "-D", env["SLAPD_ADMIN_DN"],
                    "-w", env["SLAPD_ADMIN_PASSWORD"]], input=ldif.encode(), check=True,
                   capture_output=True)


def _config(tmp: Path, env: dict[str, str], target: str) -> Path:
    path = tmp / "config.toml"
    path.write_text(f"""
profile = "bench"
[source]
type = "ldap"
url = "{env['SLAPD_URL']}"
bind_dn = "{env['SLAPD_ADMIN_DN']}"
password_env = "BENCH_LDAP_PASSWORD"
page_size = 1000
timeout = 300
disabled_filter = "(pwdAccountLockedTime=*)"
{target}
[sync]
max_revocations = 1000000
max_revocation_ratio = 1.0
[state]
path = "{tmp / 'state.db'}"
""")
    path.chmod(0o600)
    return path


class BitwardenSide:
    """The Bitwarden-compatible server on threads of this process."""

    name = "bitwarden"

    def __init__(self) -> None:
        from tests.emulators.bitwarden.server import BitwardenServer

        self.server = BitwardenServer()
        self.server.start()

    def target(self) -> str:
        return (f'[target]\ntype = "bitwarden"\nserver_url = "{self.server.url}"\n'
                f'client_id = "{self.server.client_id}"\nclient_secret_env = "BENCH_BW_SECRET"\n'
                f"timeout = 300\n")

    def env(self) -> dict[str, str]:
        return {"BENCH_BW_SECRET": self.server.client_secret}

    def requests(self) -> dict[str, int]:
        """Requests since the last call: all, and writes (token requests are not writes)."""
        reqs = list(self.server.requests)
        self.server.clear_log()
        writes = [r for r in reqs if r.method != "GET" and "/connect/token" not in r.path]
        return {"requests": len(reqs), "writes": len(writes)}

    def members(self) -> int:
        return len(self.server.org.members)

    def close(self) -> None:
        self.server.stop()


class ScimSide:
    """tests/emulators/scimlat with Bulk, in its own process."""

    name = "scim"

    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.emulators.scimlat.server", "--latency", str(latency),
             "--token", SCIM_TOKEN, "--bulk"], cwd=ROOT, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.url = str(json.loads(self.proc.stdout.readline())["url"])
        self._stats("POST")

    def _stats(self, method: str = "GET") -> dict[str, int]:
        import urllib.request

        req = urllib.request.Request(self.url.rsplit("/scim/v2", 1)[0] + "/_stats",
                                     method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            return dict(json.loads(r.read()))

    def target(self) -> str:
        return (f'[target]\ntype = "scim"\nurl = "{self.url}"\ntoken_env = "BENCH_SCIM_TOKEN"\n'
                f"timeout = 300\n")

    def env(self) -> dict[str, str]:
        return {"BENCH_SCIM_TOKEN": SCIM_TOKEN}

    def requests(self) -> dict[str, int]:
        s = self._stats("POST")          # read and reset
        return {"requests": sum(s.values()),
                "writes": sum(v for k, v in s.items() if k != "GET")}

    def members(self) -> int:
        import urllib.request

        req = urllib.request.Request(f"{self.url}/Users?count=0",
                                     headers={"Authorization": f"Bearer {SCIM_TOKEN}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            n = int(json.loads(r.read())["totalResults"])
        self._stats("POST")
        return n

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _sync(config: Path, side: Any, ldap_env: dict[str, str]) -> Sample:
    import os

    env = dict(os.environ, BENCH_LDAP_PASSWORD=ldap_env["SLAPD_ADMIN_PASSWORD"], **side.env())
    # The command a scheduler runs: default output (a bounded summary, not a TTY).
    s = run_child([DIRCONNECTOR, "--config", str(config), "sync"], env=env)
    s.out.pop("stdout", None)
    s.out.update(side.requests())
    return s


def run_side(n: int, make: Callable[[], Any], repeat: int, full_repeat: int,
             change_repeat: int) -> dict[str, Any]:
    env = slapd(n)
    res: dict[str, Any] = {}
    full: list[Sample] = []
    side = None
    with tempfile.TemporaryDirectory(prefix="dirconnector-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for r in range(full_repeat):
            if side is not None:
                side.close()
            (tmp / "state.db").unlink(missing_ok=True)
            side = make()
            config = _config(tmp, env, side.target())
            log(f"e2e {n} -> {side.name}: full sync {r + 1}/{full_repeat}")
            full.append(_sync(config, side, env))
        assert side is not None
        try:
            res["full"] = _summ(full)
            res["full"]["server_members"] = side.members()
            noop = []
            for r in range(repeat):
                log(f"e2e {n} -> {side.name}: no-op resync {r + 1}/{repeat}")
                noop.append(_sync(config, side, env))
            res["noop"] = _summ(noop)
            one = []
            locked: list[str] = []
            try:
                for r in range(min(change_repeat, len(LOCK_UIDS))):
                    log(f"e2e {n} -> {side.name}: one user locked {r + 1}/{change_repeat}")
                    _ldif_lock(env, True, LOCK_UIDS[r])
                    locked.append(LOCK_UIDS[r])
                    one.append(_sync(config, side, env))
            finally:
                for uid in locked:              # slapd is shared by later figures and runs
                    _ldif_lock(env, False, uid)
            res["one_change"] = _summ(one)
        finally:
            side.close()
    return res


def _summ(samples: list[Sample]) -> dict[str, Any]:
    out = summarise(samples)
    out["writes"] = [s.out["writes"] for s in samples]
    out["requests"] = [s.out["requests"] for s in samples]
    return out


def run(sizes: list[int], repeat: int, latency: float = 0.0) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for n in sizes:
        # Large sizes: one full sync (about a minute each) and two changed-user rounds, so
        # that scripts/bench all fits in 15 minutes on a 2-core box.
        big = n > 10_000
        change_repeat = min(repeat, 2) if big else repeat
        results[str(n)] = {
            "bitwarden": run_side(n, BitwardenSide, repeat, 1 if big else repeat,
                                  change_repeat),
            "scim": run_side(n, lambda: ScimSide(latency), repeat, 1 if big else repeat,
                             change_repeat),
        }
    ratio = None
    keys = sorted(results, key=int)
    if len(keys) >= 2:
        a, b = results[keys[0]]["bitwarden"]["full"], results[keys[-1]]["bitwarden"]["full"]
        ratio = b["wall_s"]["median"] / a["wall_s"]["median"]
        results["growth_full_bitwarden"] = {"from": int(keys[0]), "to": int(keys[-1]),
                                            "time_ratio": ratio}
    return results


def table(results: dict[str, Any]) -> list[str]:
    lines = [f"{'size':>8} {'target':<10} {'run':<11} {'wall':>22} {'CPU':>22} "
             f"{'peak RSS':>20}  writes (per run)"]
    for n, per in results.items():
        if not n.isdigit():
            continue
        for target, figs in per.items():
            for run_name in ("full", "noop", "one_change"):
                f = figs[run_name]
                lines.append(f"{int(n):>8} {target:<10} {run_name:<11} {fmt(f['wall_s']):>22} "
                             f"{fmt(f['cpu_s']):>22} {fmt(f['rss_mb'], ' MB', 0):>20}  "
                             f"{f['writes']}")
    g = results.get("growth_full_bitwarden")
    if g:
        lines.append(f"full sync to bitwarden grows {g['time_ratio']:.1f}x from {g['from']} to "
                     f"{g['to']} users")
    return lines


if __name__ == "__main__":
    print("\n".join(table(run([int(x) for x in (sys.argv[1:] or ["10000"])], 1))))
