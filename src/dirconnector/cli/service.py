"""daemon and status: running profiles on their schedule."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from .context import Ctx, errors_to_exit, pass_ctx
from .main import main


@main.command()
@click.option("-c", "--config", "configs", multiple=True, metavar="FILE",
              help="A profile's configuration file; repeat for several profiles "
                   "[default: the global --config].")
@click.option("--health-addr", metavar="HOST:PORT",
              help="Serve /healthz and /metrics (Prometheus) here, e.g. 127.0.0.1:9464. "
                   "Off by default.")
@click.option("--stop-timeout", default=30.0, show_default=True,
              help="Seconds to let a running change finish after SIGTERM.")
@pass_ctx
def daemon(ctx: Ctx, configs: tuple[str, ...], health_addr: str | None,
           stop_timeout: float) -> None:
    """Run every profile on its [schedule] until SIGTERM; SIGHUP reloads the files.

    Each file is one profile (its top-level `profile` name keys the state). Runs
    of one profile never overlap, with each other or with a manual `sync`. Logs
    are JSON lines unless stderr is a terminal (or --log-format says otherwise).
    """
    from .. import logs
    from ..daemon import Daemon
    from ..settings import config_path, load, secret_values

    logs.setup(verbose=ctx.verbose, quiet=ctx.quiet, fmt=ctx.log_format, daemon=True)
    with errors_to_exit(ctx):
        paths = [Path(c) for c in configs] or [config_path(ctx.config)]
        for path in paths:
            profile = load(path)
            logs.add_secrets(secret_values(profile))
            for warning in profile.warnings:   # e.g. inline secrets in a readable file
                logging.getLogger("dirconnector").warning(warning)
        d = Daemon(paths, health_addr=health_addr, stop_timeout=stop_timeout)
        sys.exit(d.serve())


@main.command()
@click.option("-c", "--config", "configs", multiple=True, metavar="FILE",
              help="Profiles to show (repeatable) [default: the global --config].")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def status(ctx: Ctx, configs: tuple[str, ...], fmt: str) -> None:
    """Each profile's last run, its state, and the daemon's next scheduled run."""
    import datetime as dt

    from rich.table import Table

    from ..settings import config_path, load
    from ..state import StateStore

    with errors_to_exit(ctx):
        rows = []
        for path in [Path(c) for c in configs] or [config_path(ctx.config)]:
            profile = load(path)
            store = StateStore(profile.settings.state.path)
            last = store.runs(profile.name, 1)
            info = store.get_meta(profile.name, "daemon", {}) or {}
            frozen = store.frozen(profile.name)
            rows.append({
                "profile": profile.name, "config": str(path),
                "last_run": last[0].id if last else None,
                "last_status": last[0].status if last else None,
                "last_error": last[0].error if last else "",
                "next_run": dt.datetime.fromtimestamp(info["next_run"]).isoformat(
                    timespec="seconds") if info.get("next_run") else None,
                "failures": info.get("failures", 0), "frozen": bool(frozen)})
            store.close()
        if fmt == "json":
            click.echo(json.dumps(rows, indent=2))
            return
        table = Table("profile", "last run", "status", "next run (daemon)", "failures", "note")
        for r in rows:
            note = "migrated to IdP SCIM (frozen)" if r["frozen"] else (r["last_error"] or "")[:60]
            table.add_row(r["profile"], r["last_run"] or "never", r["last_status"] or "-",
                          r["next_run"] or "-", str(r["failures"]), note)
        ctx.console.print(table)
