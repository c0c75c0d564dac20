"""daemon and status: running profiles on their schedule."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import DirconnectorError
from .context import Ctx, errors_to_exit, pass_ctx
from .main import main


@main.command()
@click.option("-c", "--config", "configs", multiple=True, metavar="FILE",
              help="A profile's configuration file; repeat for several profiles "
                   "[default: the global --config].")
@click.option("--health-addr", metavar="HOST:PORT",
              help="Serve /healthz and /metrics (Prometheus) here, e.g. 127.0.0.1:9464. "
                   "Off by default.")
@click.option("--profiles", "profiles_dir", type=click.Path(file_okay=False, path_type=Path),
              metavar="DIR", help="Every *.toml in DIR is a profile; SIGHUP re-reads the "
              "directory (new files start, removed ones stop).")
@click.option("--replica-id", metavar="NAME", envvar="DIRCONNECTOR_REPLICA_ID",
              help="This replica's name in `status` and /healthz [default: host:pid].")
@click.option("--stop-timeout", default=30.0, show_default=True,
              help="Seconds to let a running change finish after SIGTERM.")
@pass_ctx
def daemon(ctx: Ctx, configs: tuple[str, ...], health_addr: str | None,
           profiles_dir: Path | None, replica_id: str | None, stop_timeout: float) -> None:
    """Run every profile on its [schedule] until SIGTERM; SIGHUP reloads the files.

    Each file is one profile (its top-level `profile` name keys the state). Runs
    of one profile never overlap, with each other or with a manual `sync`. Logs
    are JSON lines unless stderr is a terminal (or --log-format says otherwise).

    With a PostgreSQL [state] url, start it N times (hosts, pods) on the same
    profiles: each profile runs once per tick on one replica, and a replica that
    dies loses its profiles to the others at the next tick.
    """
    from .. import logs
    from ..daemon import Daemon, profile_files
    from ..settings import config_path, load, secret_values

    logs.setup(verbose=ctx.verbose, quiet=ctx.quiet, fmt=ctx.log_format, daemon=True)
    with errors_to_exit(ctx):
        paths = [Path(c) for c in configs] or ([] if profiles_dir else
                                               [config_path(ctx.config)])
        for path in [*paths, *profile_files(profiles_dir)]:
            profile = load(path)
            logs.add_secrets(secret_values(profile))
            for warning in profile.warnings:   # e.g. inline secrets in a readable file
                logging.getLogger("dirconnector").warning(warning)
        d = Daemon(paths, health_addr=health_addr, stop_timeout=stop_timeout,
                   profiles_dir=profiles_dir, replica=replica_id)
        sys.exit(d.serve())


@main.command()
@pass_ctx
def watch(ctx: Ctx) -> None:
    """Follow the directory's changes and apply each within seconds, until SIGTERM.

    Starts with a full sync, then applies each batch of changes the directory streams
    (OpenLDAP: RFC 4533 sync; others: see `dirconnector check`), under the same safety
    limits counted over [sync] guard_window. SIGHUP reloads the configuration; a full
    reconcile runs every [schedule] full_reconcile.
    """
    import signal
    import threading

    from .. import logs, settings
    from ..watch import Watcher

    logs.setup(verbose=ctx.verbose, quiet=ctx.quiet, fmt=ctx.log_format, daemon=True)
    with errors_to_exit(ctx):
        profile = ctx.profile()
        store = ctx.store()
        done = threading.Event()
        reload = threading.Event()
        current: list[threading.Event] = []
        failure: list[BaseException] = []

        def stop(signum: int, _frame: object) -> None:
            logging.getLogger("dirconnector").info("received %s",
                                                   signal.Signals(signum).name)
            done.set()
            for ev in current:
                ev.set()

        def hup(_signum: int, _frame: object) -> None:
            reload.set()
            for ev in current:
                ev.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)
        while not done.is_set():
            halt = threading.Event()
            current[:] = [halt]
            watcher = Watcher(profile, store, stop=halt)

            def run(w: Watcher = watcher) -> None:
                try:
                    w.run()
                except BaseException as exc:  # raised again in the main thread
                    failure.append(exc)
                    done.set()

            thread = threading.Thread(target=run, name="watch", daemon=True)
            thread.start()
            while thread.is_alive():
                thread.join(0.5)
            if failure:
                raise failure[0]
            if reload.is_set() and not done.is_set():
                reload.clear()
                try:
                    profile = settings.load(ctx.config)
                    logs.add_secrets(settings.secret_values(profile))
                    logging.getLogger("dirconnector").info("configuration reloaded")
                except DirconnectorError as exc:
                    logging.getLogger("dirconnector").error(
                        "reload failed, keeping the running configuration: %s", exc)


@main.command()
@click.option("-c", "--config", "configs", multiple=True, metavar="FILE",
              help="Profiles to show (repeatable) [default: the global --config].")
@click.option("--profiles", "profiles_dir", type=click.Path(file_okay=False, path_type=Path),
              metavar="DIR", help="Every *.toml in DIR (as `daemon --profiles`).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def status(ctx: Ctx, configs: tuple[str, ...], profiles_dir: Path | None, fmt: str) -> None:
    """Each profile's last run, its state, the daemon's next run; with replicas (PostgreSQL),
    which replica holds each profile, and every replica's last heartbeat."""
    import datetime as dt
    import time

    from rich.table import Table

    from ..daemon import profile_files
    from ..settings import config_path, load
    from ..state import SharesProfiles, StateStore, open_store

    def when(ts: float | None) -> str | None:
        return dt.datetime.fromtimestamp(ts).isoformat(timespec="seconds") if ts else None

    with errors_to_exit(ctx):
        rows = []
        stores: dict[str, StateStore] = {}
        paths = [Path(c) for c in configs] or ([] if profiles_dir else
                                               [config_path(ctx.config)])
        try:
            for path in [*paths, *profile_files(profiles_dir)]:
                profile = load(path)
                state = profile.settings.state
                where = state.url.get_secret_value() if state.url else str(state.path)
                store = stores.get(where) or stores.setdefault(where, open_store(state))
                holders = store.holders() if isinstance(store, SharesProfiles) else {}
                last = store.runs(profile.name, 1)
                info = store.get_meta(profile.name, "daemon", {}) or {}
                frozen = store.frozen(profile.name)
                holder = holders.get(profile.name)
                stream = store.connector_state(profile.name)
                rows.append({
                    "stream_position": stream.get("stream_position"),
                    "stream_lag": stream.get("stream_lag"),
                    "profile": profile.name, "config": str(path),
                    "last_run": last[0].id if last else None,
                    "last_status": last[0].status if last else None,
                    "last_error": last[0].error if last else "",
                    "next_run": when(info.get("next_run")),
                    "failures": info.get("failures", 0), "frozen": bool(frozen),
                    "replica": holder.replica if holder else (last[0].replica if last
                                                              else ""),
                    "held": bool(holder and holder.held)})
            replicas: list[dict[str, Any]] = [{"replica": r.id, "host": r.host, "pid": r.pid,
                         "started": when(r.started), "seen": when(r.seen),
                         "alive": time.time() - r.seen < 30, "running": list(r.running)}
                        for store in stores.values() if isinstance(store, SharesProfiles)
                        for r in store.replicas()]
        finally:
            for store in stores.values():
                store.close()
        if fmt == "json":
            click.echo(json.dumps({"profiles": rows, "replicas": replicas} if replicas
                                  else rows, indent=2))
            return
        table = Table("profile", "last run", "status", "next run (daemon)", "failures", "note")
        if replicas:
            table.add_column("replica")
        for r in rows:
            note = "migrated to IdP SCIM (frozen)" if r["frozen"] else (r["last_error"] or "")[:60]
            if r["stream_position"] and not note:
                lag = r["stream_lag"]
                note = (f"watch: at {str(r['stream_position'])[:40]}"
                        + (f", last lag {lag:.2f} s" if isinstance(lag, int | float) else ""))
            cells = [r["profile"], r["last_run"] or "never", r["last_status"] or "-",
                     r["next_run"] or "-", str(r["failures"]), note]
            if replicas:
                cells.append(f"{r['replica']} (running)" if r["held"] else r["replica"])
            table.add_row(*cells)
        ctx.console.print(table)
        if replicas:
            reps = Table("replica", "host", "pid", "started", "last heartbeat", "running")
            for rep in replicas:
                seen = rep["seen"] + ("" if rep["alive"] else " (gone)")
                reps.add_row(str(rep["replica"]), str(rep["host"]), str(rep["pid"]),
                             str(rep["started"]), seen, str(len(rep["running"])))
            ctx.console.print(reps)


@main.group("state")
def state_group() -> None:
    """The state store: create or upgrade its schema."""


@state_group.command("migrate")
@pass_ctx
def state_migrate(ctx: Ctx) -> None:
    """Create or upgrade the state store's schema (idempotent; PostgreSQL needs it once
    before the first daemon starts, and after each upgrade of dirconnector)."""
    from ..state import migrate

    with errors_to_exit(ctx):
        state = ctx.profile().settings.state
        where = state.url is not None
        before, after = migrate(state)
        from ..state import open_store

        store = open_store(state)
        name = store.describe()
        store.close()
        if not where:
            ctx.console.print(f"{name}: schema version {after} (SQLite creates its tables "
                              f"when it opens; nothing to migrate).")
        elif before == after:
            ctx.console.print(f"{name}: schema version {after}, already up to date.")
        else:
            ctx.console.print(f"{name}: schema version {before} -> {after}.")
