"""scripts/bench replicas: daemon replicas sharing profiles through PostgreSQL (issue 24).

- overhead: what the daemon adds around a no-op run (lock, tick claim, run rows, the
  no-change check, back-off and outcome meta, unlock), ``Daemon.run_job`` in-process on
  1,000 file-source profiles whose directory is unchanged; on PostgreSQL and, as the
  baseline, on SQLite; plus the cost of a fire that finds the tick taken (the other
  replicas' share of every tick).
- ticks: 1,000 profiles, 3 ``dirconnector daemon --profiles`` processes, no-op runs: for
  each tick, the time from its start until every profile's run in it has finished.
- failover: ``kill -9`` of one replica; for each profile it ran, the time until another
  replica runs it (goal: interval + 5 s at most).

Goals: overhead <= 20 ms per run on PostgreSQL; each tick of 1,000 profiles on 3 replicas
within 30 s; failover <= interval + 5 s.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench_common import ROOT, log

PROFILES = 1000
INTERVAL = 20.0
PG_SCRIPT = ROOT / "scripts" / "servers" / "postgres"
DAEMON = [sys.executable, "-c", "import sys; from dirconnector import cli; cli.entry(sys.argv[1:])"]


def _pg(run_dir: Path) -> dict[str, str]:
    out = subprocess.run([str(PG_SCRIPT), "start", "--fresh", "--run-dir", str(run_dir)],
                         capture_output=True, text=True, check=True)
    return {k: v.strip("'") for k, _, v in (line.removeprefix("export ").partition("=")
                                            for line in out.stdout.splitlines() if "=" in line)}


def _database(env: dict[str, str]) -> tuple[str, dict[str, str]]:
    import psycopg

    from dirconnector.settings import StateSettings
    from dirconnector.state import migrate

    name = f"bench_{uuid.uuid4().hex[:8]}"
    password = Path(env["PG_PASSWORD_FILE"]).read_text().strip()
    with psycopg.connect(env["PG_URL"], password=password, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = env["PG_URL"].rsplit("/", 1)[0] + "/" + name
    migrate(StateSettings.model_validate({"url": url,
                                          "password_file": env["PG_PASSWORD_FILE"]}))
    return url, {"DIRCONNECTOR_STATE__URL": url,
                 "DIRCONNECTOR_STATE__PASSWORD_FILE": env["PG_PASSWORD_FILE"]}


def _profiles(folder: Path, scim_url: str, interval: float, state: str = "") -> None:
    folder.mkdir(parents=True)
    data = folder.parent / "data"
    data.mkdir(exist_ok=True)
    for i in range(PROFILES):
        name = f"p{i:04d}"
        (data / f"{name}.json").write_text(json.dumps(
            {"users": [{"id": f"{name}-u0", "email": f"u0@{name}.example.com"}]}))
        (folder / f"{name}.toml").write_text(f"""profile = "{name}"
[source]
type = "file"
users = "{data / f'{name}.json'}"
[target]
type = "scim"
url = "{scim_url}/{name}/v2"
token_env = "SCIM_TOKEN"
[schedule]
interval = "{interval:.0f}s"
full_reconcile = "24h"
{state}""")


def _next_tick(state_env: dict[str, str]) -> None:
    """Forget the ticks claimed, as if the next one had come (the interval is an hour)."""
    import psycopg

    password = Path(state_env["DIRCONNECTOR_STATE__PASSWORD_FILE"]).read_text().strip()
    with psycopg.connect(state_env["DIRCONNECTOR_STATE__URL"], password=password,
                         autocommit=True) as conn:
        conn.execute("UPDATE holders SET tick = ''")


def _overhead(tmp: Path, scim_port: int, state_env: dict[str, str]) -> dict[str, Any]:
    """Daemon.run_job on every profile, in-process: first run (creates), then no-op runs."""
    from dirconnector import daemon as daemon_mod

    out: dict[str, Any] = {}
    for kind in ("postgres", "sqlite"):
        folder = tmp / f"overhead-{kind}" / "profiles"
        state = f'[state]\npath = "{folder.parent / "state.db"}"\n' if kind == "sqlite" else ""
        _profiles(folder, f"http://127.0.0.1:{scim_port}", 3600, state)
        saved = dict(os.environ)
        if kind == "postgres":
            os.environ.update(state_env)
        os.environ["SCIM_TOKEN"] = saved["BENCH_SCIM_TOKEN"]
        try:
            d = daemon_mod.Daemon([], profiles_dir=folder, replica="bench")
            d.scheduler.start(paused=True)
            names = sorted(d.jobs)
            for name in names:                   # first run: the one account is created
                d._add_job(d.jobs[name])
                d.run_job(name)
            if kind == "postgres":               # a new tick for every profile
                _next_tick(state_env)
            times = []
            for name in names:                   # a new tick: no-op runs
                t0 = time.perf_counter()
                d.run_job(name)
                times.append(time.perf_counter() - t0)
            skips = []
            if kind == "postgres":
                for name in names:               # the same tick again: it is taken
                    t0 = time.perf_counter()
                    d.run_job(name)
                    skips.append(time.perf_counter() - t0)
            d.scheduler.shutdown(wait=False)
            statuses = {j.last.get("status") for j in d.jobs.values()}
        finally:
            os.environ.clear()
            os.environ.update(saved)
        out[kind] = {"median_ms": statistics.median(times) * 1000,
                     "p95_ms": sorted(times)[int(len(times) * 0.95)] * 1000,
                     "statuses": sorted(str(s) for s in statuses)}
        if skips:
            out[kind]["skip_median_ms"] = statistics.median(skips) * 1000
    return out


def _ticks_and_failover(tmp: Path, scim_port: int, state_env: dict[str, str],
                        pg_url: str, password: str) -> dict[str, Any]:
    import psycopg

    folder = tmp / "replicas" / "profiles"
    _profiles(folder, f"http://127.0.0.1:{scim_port}", INTERVAL)
    env = {**os.environ, **state_env, "SCIM_TOKEN": os.environ["BENCH_SCIM_TOKEN"],
           "DIRCONNECTOR_MIN_INTERVAL_SECONDS": "1"}
    procs = []
    for i in range(3):
        err = (tmp / f"replica-{i}.log").open("wb")
        procs.append(subprocess.Popen([*DAEMON, "--log-format", "json", "daemon", "--profiles",
                                       str(folder), "--replica-id", f"r{i}"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=err))
    conn = psycopg.connect(pg_url, password=password, autocommit=True)
    try:
        t_start = time.time()
        first_tick = int(t_start // INTERVAL) + 2     # the first tick is the creating one
        measured = [first_tick, first_tick + 1, first_tick + 2]
        end = (measured[-1] + 1) * INTERVAL + 2
        log(f"replicas: 3 daemons, {PROFILES} profiles, interval {INTERVAL:.0f}s; "
            f"measuring ticks until {time.strftime('%H:%M:%S', time.localtime(end))}")
        while time.time() < end:
            time.sleep(1)
        ticks = {}
        for k in measured:
            rows = conn.execute("SELECT count(*), max(finished), count(DISTINCT replica), "
                                "percentile_cont(0.5) WITHIN GROUP (ORDER BY finished - "
                                "started), percentile_cont(0.5) WITHIN GROUP (ORDER BY "
                                "started - %s) FROM runs WHERE tick = %s",
                                (k * INTERVAL, f"{k}/{INTERVAL:g}")).fetchone()
            ticks[k] = {"runs": rows[0], "seconds": (rows[1] or 0) - k * INTERVAL,
                        "replicas": rows[2], "run_median_s": rows[3],
                        "start_median_s": rows[4]}
        # failover: kill -9 replica 0 in the middle of an interval
        while (time.time() % INTERVAL) < INTERVAL / 2:
            time.sleep(0.2)
        mine = {r[0] for r in conn.execute(
            "SELECT DISTINCT ON (profile) profile, replica FROM runs ORDER BY profile, "
            "started DESC").fetchall() if r[1] == "r0"}
        killed = time.time()
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        time.sleep(INTERVAL + 8)
        taken = dict(conn.execute(
            "SELECT profile, min(started) FROM runs WHERE started > %s AND replica <> 'r0' "
            "GROUP BY profile", (killed,)).fetchall())
        delays = sorted(taken[p] - killed for p in mine if p in taken)
        failover = {"profiles": len(mine), "taken_over": len(delays),
                    "max_s": max(delays) if delays else None,
                    "median_s": statistics.median(delays) if delays else None}
    finally:
        for p in procs[1:]:
            p.send_signal(signal.SIGTERM)
        for p in procs[1:]:
            p.wait(timeout=60)
        conn.close()
    return {"ticks": ticks, "failover": failover, "interval_s": INTERVAL}


def run() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from tests.integration.scim.conftest import TOKEN, start_server

    os.environ["BENCH_SCIM_TOKEN"] = TOKEN

    tmp = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    tmp.chmod(0o755)
    pg_dir = tmp / "pg"
    env = _pg(pg_dir)
    scim = subprocess.Popen(["true"])  # replaced below
    try:
        server = start_server("--dynamic-tenants")
        scim = server.process
        password = Path(env["PG_PASSWORD_FILE"]).read_text().strip()
        _, state_env = _database(env)
        log("replicas: overhead per run (in-process, 1,000 profiles, PostgreSQL and SQLite)")
        overhead = _overhead(tmp, server.port, state_env)
        url2, state_env2 = _database(env)
        replicas = _ticks_and_failover(tmp, server.port, state_env2, url2, password)
    finally:
        scim.terminate()
        subprocess.run([str(PG_SCRIPT), "stop", "--run-dir", str(pg_dir)], capture_output=True)
    return {"overhead": overhead, **replicas}


def table(res: dict[str, Any]) -> list[str]:
    o = res["overhead"]
    lines = [f"daemon overhead per no-op run: PostgreSQL median {o['postgres']['median_ms']:.1f} ms"
             f" (p95 {o['postgres']['p95_ms']:.1f}), SQLite median "
             f"{o['sqlite']['median_ms']:.1f} ms (p95 {o['sqlite']['p95_ms']:.1f}); a fire "
             f"that finds its tick taken: {o['postgres']['skip_median_ms']:.1f} ms"]
    for k, t in res["ticks"].items():
        lines.append(f"tick {k}: {t['runs']} runs on {t['replicas']} replicas, done "
                     f"{t['seconds']:.1f} s after the tick started (interval "
                     f"{res['interval_s']:.0f} s; median start {t['start_median_s'] or 0:.1f} "
                     f"s in, median run {1000 * (t['run_median_s'] or 0):.0f} ms)")
    f = res["failover"]
    lines.append(f"failover after kill -9: {f['taken_over']} of {f['profiles']} profiles "
                 f"taken over; max {f['max_s']:.1f} s, median {f['median_s']:.1f} s "
                 f"(goal: interval + 5 s = {res['interval_s'] + 5:.0f} s)")
    return lines
