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
import hashlib
import json
import os
import shutil
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
            errlog.flush()
            res["lag"].update(_stream_batches(tmp / "log"))
    finally:
        if proc is not None:
            proc.kill()
        side.close()
    return res


SAMBA = ROOT / "scripts" / "servers" / "samba"


def _samba(*args: str) -> str:
    res = subprocess.run([sys.executable, str(SAMBA), *args], capture_output=True, text=True,
                         timeout=900)
    if res.returncode:
        raise SystemExit(f"bench watch ad: scripts/servers/samba {' '.join(args)} failed: "
                         f"{res.stderr[-1500:]}")
    return res.stdout


def _ad_change(k: int, n: int, admin: Any, scim: Scim, ou: str) -> float:
    """One change of kind KINDS[k % 8] made over LDAP as Administrator; the seconds from
    the DC acknowledging it to the SCIM server holding the result."""
    kind = KINDS[k % len(KINDS)]
    groups = max(1, n // 20)
    i = 200 + 13 * k
    name = f"bw{i:06d}"
    dn, email = f"CN={name},{ou}", f"{name}@dirconn.test"
    g, o = i // 20, (i // 20 + 7) % groups
    dept, other = f"bench-{g:05d}", f"bench-{o:05d}"
    if kind == "create":
        new = f"bn{k:04d}-{os.getpid() % 10000}"
        admin.conn.add(f"CN={new},{ou}", ["top", "person", "organizationalPerson", "user"],
                       {"sAMAccountName": new, "givenName": "New", "sn": new,
                        "mail": f"{new}@dirconn.test", "userAccountControl": str(0x220)})
        at = time.monotonic()
        done = _until(lambda: scim.user(f"{new}@dirconn.test") is not None)
    elif kind == "disable":
        admin.modify(dn, userAccountControl=str(0x200 | 0x20 | 0x10000 | 0x2))
        at = time.monotonic()
        done = _until(lambda: (scim.user(email) or {}).get("active") is False)
    elif kind == "rename":
        admin.conn.modify_dn(dn, f"CN=r{name}")
        admin.modify(f"CN=r{name},{ou}", displayName=f"Renamed {k}")
        at = time.monotonic()
        done = _until(lambda: (scim.user(email) or {}).get("displayName") == f"Renamed {k}")
    elif kind == "email":
        admin.modify(dn, mail=f"changed{k}@dirconn.test")
        at = time.monotonic()
        done = _until(lambda: scim.user(f"changed{k}@dirconn.test") is not None)
    elif kind in ("group_add", "group_remove"):
        ref = str((scim.user(email) or {}).get("id"))
        target = other if kind == "group_add" else dept
        if kind == "group_add":
            admin.add_members(f"CN={target},{ou}", dn)
        else:
            admin.remove_members(f"CN={target},{ou}", dn)
        at = time.monotonic()
        done = _until(lambda: (ref in scim.members(target)) == (kind == "group_add"))
    elif kind == "nested_move":
        ref = str((scim.user(email) or {}).get("id"))
        admin.add_members(f"CN={other},{ou}", f"CN={dept},{ou}")
        at = time.monotonic()
        done = _until(lambda: ref in scim.members(other))
    else:
        admin.delete(dn)
        at = time.monotonic()
        done = _until(lambda: (scim.user(email) or {}).get("active") is not True)
    return done - at


def ad_size(n: int, idle: float, modes: list[str]) -> dict[str, Any]:
    """Samba AD with N bench users and N/20 groups loaded offline; ``watch`` per mode."""
    import ldap3

    from tests.integration.ad.conftest import AdServer
    from tests.integration.ad.streams import (
        STREAMER,
        STREAMER_PASSWORD,
        Admin,
        grant_deleted_objects_read,
    )

    res: dict[str, Any] = {"source": "ad"}
    if 200 + 13 * CHANGES * len(modes) > n:
        raise SystemExit(f"bench watch ad: {n} users is too few for {len(modes)} runs of "
                         f"{CHANGES} changes (each takes users of its own)")
    log(f"watch ad {n}: a fresh DC (scripts/servers/samba start --fresh), then stopped")
    _samba("start", "--fresh")
    env = json.loads(_samba("env", "--json"))
    _samba("stop")
    try:
        res["seed"] = _ad_load(n, Path(env["DIRCONNECTOR_AD_SMB_CONF"]))
        subprocess.run(["samba", "-s", env["DIRCONNECTOR_AD_SMB_CONF"], "-D"], check=True)
        t0 = time.monotonic()
        while subprocess.run([sys.executable, str(SAMBA), "status"],
                             capture_output=True).returncode:
            if time.monotonic() - t0 > 120:
                raise SystemExit("bench watch ad: the loaded DC did not answer within 120 s")
            time.sleep(0.5)
        ad = AdServer(url=env["DIRCONNECTOR_AD_URL"],
                      ldaps_url=env["DIRCONNECTOR_AD_LDAPS_URL"],
                      bind_dn=env["DIRCONNECTOR_AD_BIND_DN"],
                      password=env["DIRCONNECTOR_AD_PASSWORD"],
                      base_dn=env["DIRCONNECTOR_AD_BASE_DN"],
                      ca_file=env["DIRCONNECTOR_AD_CA_FILE"],
                      admin_dn=env["DIRCONNECTOR_AD_ADMIN_DN"],
                      admin_password=env["DIRCONNECTOR_AD_ADMIN_PASSWORD"],
                      smb_conf=env["DIRCONNECTOR_AD_SMB_CONF"])
        admin = Admin(ad)
        streamer = f"CN={STREAMER},OU=Service Accounts,{ad.ou}"
        admin.conn.add(streamer, ["top", "person", "organizationalPerson", "user"],
                       {"sAMAccountName": STREAMER})
        ad.samba_tool("user", "setpassword", STREAMER, f"--newpassword={STREAMER_PASSWORD}")
        ad.samba_tool("user", "enable", STREAMER)
        ad.samba_tool("dsacl", "set", "--car=get-changes", "--action=allow",
                      f"--objectdn={ad.base_dn}", f"--trusteedn={streamer}")
        grant_deleted_objects_read(ad, streamer)
        ou = f"OU=Bench,{ad.ou}"
        for m, mode in enumerate(modes):
            bind = (streamer, STREAMER_PASSWORD) if mode == "dirsync" else (ad.bind_dn,
                                                                             ad.password)
            res[mode] = _ad_watch(n, idle, mode, ad.url, bind, ou, admin, m * CHANGES)
            log(f"watch ad {n} ({mode}): " + json.dumps(res[mode]))
        with contextlib.suppress(ldap3.core.exceptions.LDAPException):
            admin.conn.unbind()
    finally:
        _samba("stop")
    return res


def _ad_load(n: int, smb_conf: Path) -> dict[str, Any]:
    """Load the stopped DC with bench_watch_adload.py, or, with BENCH_WATCH_AD_CACHE=1, copy
    back the DC directory a previous load of the same size left (100k: about 2.3 GB, kept
    beside the test DC's own cache; keyed by the loader and the pristine DC's cache key)."""
    adload = ROOT / "scripts" / "bench_watch_adload.py"
    dc = smb_conf.parents[1]
    pristine = sorted(p.name for p in dc.parent.glob("provisioned-*.tar"))
    key = hashlib.sha256(adload.read_bytes() + "".join(pristine).encode()).hexdigest()[:12]
    cached = dc.parent / f"bench-ad-{n}-{key}"
    use_cache = os.environ.get("BENCH_WATCH_AD_CACHE") == "1"
    if use_cache and (cached / "seed.json").exists():
        log(f"watch ad {n}: restoring the loaded DC from {cached}")
        t0 = time.monotonic()
        shutil.rmtree(dc)
        subprocess.run(["cp", "-a", str(cached / "dc"), str(dc)], check=True)
        seed = dict(json.loads((cached / "seed.json").read_text()))
        seed["restored_s"] = time.monotonic() - t0
        return seed
    log(f"watch ad {n}: loading {n} users and {n // 20} groups into the stopped DC")
    tool = Path(shutil.which("samba-tool") or "samba-tool")
    python = tool.read_text(errors="replace").splitlines()[0].removeprefix("#!").split()
    loaded = subprocess.run([*python, str(adload), str(smb_conf), str(n)], check=True,
                            capture_output=True, text=True)
    seed = dict(json.loads(loaded.stdout.strip().splitlines()[-1]))
    log(f"watch ad {n}: loaded: " + json.dumps(seed))
    if use_cache:
        for old in dc.parent.glob("bench-ad-*"):
            shutil.rmtree(old)
        tmp = cached.with_name(cached.name + ".tmp")
        tmp.mkdir()
        subprocess.run(["cp", "-a", str(dc), str(tmp / "dc")], check=True)
        (tmp / "seed.json").write_text(json.dumps(seed))
        tmp.rename(cached)
        log(f"watch ad {n}: loaded DC kept in {cached}")
    return seed


def _ad_watch(n: int, idle: float, mode: str, url: str, bind: tuple[str, str], ou: str,
              admin: Any, first: int) -> dict[str, Any]:
    res: dict[str, Any] = {"source": f"ad ({mode})"}
    side = ScimSide(0.0)
    proc = None
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="dirconnector-bench-watch-ad-")))
            errlog = stack.enter_context((tmp / "log").open("w"))
            config = tmp / "config.toml"
            config.write_text(f"""
profile = "bench"
[source]
type = "ldap"
url = "{url}"
bind_dn = "{bind[0]}"
password_env = "BENCH_AD_PASSWORD"
base_dn = "{ou}"
backend = "python-ldap"
page_size = 1000
timeout = 300
poll_interval = "1s"
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
            penv = dict(os.environ, BENCH_AD_PASSWORD=bind[1], **side.env())
            scim = Scim(side, side.env()["BENCH_SCIM_TOKEN"])
            t0 = time.monotonic()
            proc = subprocess.Popen([DIRCONNECTOR, "--config", str(config), "--log-format",
                                     "json", "watch"], env=penv, stderr=errlog)
            log(f"watch ad {n} ({mode}): first full read")
            _until(lambda: _positioned(tmp / "state.db"), 1800)
            res["start_s"] = time.monotonic() - t0
            res["start_cpu_s"] = _cpu(proc.pid)
            time.sleep(3)
            log(f"watch ad {n} ({mode}): idle for {idle:.0f} s")
            rss0, cpu0 = _rss_mb(proc.pid), _cpu(proc.pid)
            time.sleep(idle)
            cpu1, rss1 = _cpu(proc.pid), _rss_mb(proc.pid)
            res["idle"] = {"seconds": idle, "cpu_s": cpu1 - cpu0,
                           "core_share": (cpu1 - cpu0) / idle, "rss_mb_before": rss0,
                           "rss_mb_after": rss1}
            log(f"watch ad {n} ({mode}): {CHANGES} mixed changes, one at a time")
            lags: dict[str, list[float]] = {k: [] for k in KINDS}
            cpu0 = _cpu(proc.pid)
            for k in range(first, first + CHANGES):
                lags[KINDS[k % len(KINDS)]].append(_ad_change(k, n, admin, scim, ou))
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
            errlog.flush()
            res["lag"].update(_stream_batches(tmp / "log"))
    finally:
        if proc is not None:
            proc.kill()
        side.close()
    return res


def _stream_batches(path: Path) -> dict[str, int]:
    """How the Entra stream built its batches, from the watch log: by the fast path, or
    by rebuilding the whole snapshot (connectors/azure/stream.py logs one line each)."""
    fast = rebuilt = 0
    for line in path.read_text(errors="replace").splitlines():
        if "azure stream: " not in line:
            continue
        if " group items: " in line:
            rebuilt += 1
        elif " groups changed" in line:
            fast += 1
    return {"fast_batches": fast, "rebuilt_batches": rebuilt}


def table(results: dict[str, Any]) -> list[str]:
    lines = []
    for n, top in results.items():
        if not n.isdigit():
            continue
        if top["source"] == "ad":
            seed = top["seed"]
            lines.append(f"{int(n):>8} users, ad: loaded offline in {seed['total_s']:.0f} s "
                         f"({seed['users_per_s']:.0f} users/s)"
                         + (f"; this run restored that load in {seed['restored_s']:.0f} s"
                            if "restored_s" in seed else ""))
            runs = [v for v in top.values() if isinstance(v, dict) and "lag" in v]
        else:
            runs = [top]
        for r in runs:
            lines += _rows(n, r)
    return lines


def _rows(n: str, r: dict[str, Any]) -> list[str]:
    lines: list[str] = []
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
        *([f"{'':>8} batches: {lag['fast_batches']} by the fast path, "
           f"{lag['rebuilt_batches']} rebuilt the whole snapshot"]
          if "rebuilt_batches" in lag else []),
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
    if source == "ad":
        modes = os.environ.get("BENCH_WATCH_AD_MODES", "dirsync,usn").split(",")
        return {str(n): ad_size(n, idle, modes) for n in sizes}
    raise SystemExit(f"bench watch: unknown --watch-sources entry {source!r} "
                     "(ldap, entra, ad)")


if __name__ == "__main__":
    sizes = [int(x) for x in (sys.argv[1:] or ["10000"])]
    source = os.environ.get("BENCH_WATCH_SOURCE", "entra")
    res = run(source, sizes, float(os.environ.get("BENCH_WATCH_IDLE", "60")))
    print("\n".join(table(res)))
    print(json.dumps(res, indent=1, default=str))
