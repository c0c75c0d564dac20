"""The command line: the only module that prints.

Exit codes: 0 ok or no changes; 1 error; 2 changes pending (``plan
--detailed-exitcode``); 3 refused by the safety guard.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from . import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from .settings import Profile
    from .state import StateStore
    from .sync import Runner, RunResult

FORMATS = click.Choice(["table", "json", "markdown"])


class Ctx:
    """What every command needs: where the config is, how loud to be."""

    def __init__(self, config: str | None, verbose: int, quiet: bool, log_format: str) -> None:
        self.config = config
        self.verbose = verbose
        self.quiet = quiet
        self.log_format = log_format
        self._profile: Profile | None = None

    @property
    def console(self) -> Console:
        from rich.console import Console

        return Console(quiet=self.quiet, highlight=False, soft_wrap=True)

    @property
    def err(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False, soft_wrap=True)

    def profile(self) -> Profile:
        if self._profile is None:
            from . import logs, settings

            self._profile = settings.load(self.config)
            logs.add_secrets(settings.secret_values(self._profile))
            for warning in self._profile.warnings:
                logging.getLogger("dirconnector").warning(warning)
        return self._profile

    def store(self) -> StateStore:
        """The profile's state store, closed when the command ends (however it ends): an
        in-process caller (tests, an embedding program) must not collect open files."""
        from .state import StateStore

        store = StateStore(self.profile().settings.state.path)
        click.get_current_context().call_on_close(store.close)
        return store

    def runner(self, store: StateStore) -> Runner:
        from .sync import Runner

        interactive = sys.stderr.isatty() and not self.quiet
        err = self.err

        def progress(message: str) -> None:
            if interactive:
                err.print(f"[dim]… {message}[/dim]")
            logging.getLogger("dirconnector.run").info(message)

        runner = Runner(self.profile(), store, progress=progress)
        if interactive:
            _progress_bar(runner, err)
        return runner


def _progress_bar(runner: Runner, console: Console) -> None:
    """On a terminal, wrap the target's apply so each outcome advances a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    target = runner.target
    apply = target.apply

    def apply_with_bar(plan: Any, record: Any) -> None:
        if len(plan.changes) < 20:
            apply(plan, record)
            return
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                      transient=True) as bar:
            task = bar.add_task("applying", total=len(plan.changes))

            def tick(outcome: Any) -> None:
                record(outcome)
                bar.advance(task)

            apply(plan, tick)

    target.apply = apply_with_bar


@contextlib.contextmanager
def errors_to_exit(ctx: Ctx) -> Iterator[None]:
    """Map the project's errors to a one-line message, a hint, and the exit code."""
    from .errors import DirconnectorError

    try:
        yield
    except DirconnectorError as exc:
        from . import logs

        ctx.err.print(f"[bold red]Error:[/bold red] {logs.redact(str(exc))}", markup=True)
        if exc.hint:
            ctx.err.print(f"[dim]Hint: {logs.redact(exc.hint)}[/dim]")
        if ctx.verbose > 1:
            logging.getLogger("dirconnector").debug("traceback", exc_info=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        ctx.err.print("Interrupted.")
        sys.exit(130)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="dirconnector")
@click.option("-c", "--config", metavar="FILE", envvar="DIRCONNECTOR_CONFIG",
              help="Configuration file [default: $DIRCONNECTOR_CONFIG, else ./dirconnector.toml].")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--log-format", type=click.Choice(["auto", "text", "json"]), default="auto",
              show_default=True, help="Log lines as text, or JSON lines (auto: JSON when "
              "stderr is not a terminal and the daemon runs).")
@click.pass_context
def main(click_ctx: click.Context, config: str | None, verbose: int, quiet: bool,
         log_format: str) -> None:
    """Sync users and groups from a directory to a SCIM 2.0 or Bitwarden server, safely.

    \b
    Typical use:
      dirconnector check               can we reach both sides?
      dirconnector plan                what would change (nothing is written)
      dirconnector sync                plan, check safety limits, apply
      dirconnector plan --out p.json   save a plan; then: dirconnector apply p.json

    Exit codes: 0 ok / no changes, 1 error, 2 changes pending (plan
    --detailed-exitcode), 3 refused by a safety limit.
    """
    from . import logs

    logs.setup(verbose=verbose, quiet=quiet, fmt=log_format)
    click_ctx.obj = Ctx(config, verbose, quiet, log_format)


pass_ctx = click.make_pass_decorator(Ctx)


@main.command()
@pass_ctx
def check(ctx: Ctx) -> None:
    """Connect to the directory and the server; show counts and any problem."""
    from .report import check_renderable, preview_renderable
    from .sync import build_connector, build_target

    with errors_to_exit(ctx):
        profile = ctx.profile()
        ok = True
        for title, build in (("source: " + profile.source.type, build_connector),
                             ("target: " + profile.target.type, build_target)):
            from .checks import CheckReport
            from .errors import DirconnectorError

            try:
                report = build(profile).check()
            except DirconnectorError as exc:
                report = CheckReport()
                report.add("connect", False, str(exc))
            ctx.console.print(check_renderable(title, report))
            ok = ok and report.ok
        if not ok:
            ctx.err.print("[bold red]Check failed.[/bold red]")
            sys.exit(1)
        plan, refused = ctx.runner(ctx.store()).preview()
        ctx.console.print(preview_renderable(plan, refused))
        if refused:
            ctx.err.print("[bold red]The safety guard would refuse the next sync[/bold red] "
                          "(see above; `dirconnector plan` shows it whole).")
            sys.exit(3)
        ctx.console.print("[bold green]All checks passed.[/bold green]")


@main.command()
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Save the plan as JSON, to apply later with `dirconnector apply FILE`.")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when there are changes, 0 when none (1 on error).")
@click.option("--full", is_flag=True, help="Ignore incremental caches; read everything.")
@click.option("--all", "show_all", is_flag=True, help="List every change, however many.")
@pass_ctx
def plan(ctx: Ctx, fmt: str, out: str | None, detailed_exitcode: bool, full: bool,
         show_all: bool) -> None:
    """Show what a sync would change. Writes nothing to the server."""
    with errors_to_exit(ctx):
        store = ctx.store()
        result = ctx.runner(store).run("plan", full=full)
        assert result.plan is not None
        if out:
            Path(out).write_text(result.plan.dumps() + "\n", encoding="utf-8")
        _show(ctx, result, fmt, show_all)
        if out and fmt == "table":
            ctx.err.print(f"[dim]Saved the plan to {out}; apply it with "
                          f"`dirconnector apply {out}`.[/dim]")
        if detailed_exitcode and result.plan.changes:
            sys.exit(2)


@main.command()
@click.argument("plan_file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--force", is_flag=True, help="Apply even when a safety limit refuses the plan.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@pass_ctx
def apply(ctx: Ctx, plan_file: str | None, force: bool, fmt: str) -> None:
    """Apply a saved plan (or, without PLAN_FILE, plan and apply like `sync`).

    A saved plan is refused when the server no longer holds what the plan was
    computed against.
    """
    from .plan import Plan

    with errors_to_exit(ctx):
        store = ctx.store()
        runner = ctx.runner(store)
        if plan_file is None:
            result = runner.run("sync", force=force, command="apply")
        else:
            try:
                data = json.loads(Path(plan_file).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                from .errors import ConfigError

                raise ConfigError(f"plan file {plan_file}: cannot read it: {exc}") from exc
            result = runner.apply_saved(Plan.from_json(data), force=force)
        _finish(ctx, result, fmt)


@main.command()
@click.option("--dry-run", is_flag=True, help="Only show the plan (same as `plan`).")
@click.option("--force", is_flag=True, help="Apply even when a safety limit refuses the plan.")
@click.option("--full", is_flag=True,
              help="Full reconcile: ignore the no-change hash and incremental caches.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@pass_ctx
def sync(ctx: Ctx, dry_run: bool, force: bool, full: bool, fmt: str) -> None:
    """Plan, check the safety limits, and apply. Non-interactive and cron-safe."""
    with errors_to_exit(ctx):
        store = ctx.store()
        result = ctx.runner(store).run("plan" if dry_run else "sync", force=force, full=full,
                                       command="sync --dry-run" if dry_run else "sync")
        _finish(ctx, result, fmt)


def _show(ctx: Ctx, result: RunResult, fmt: str, show_all: bool = False) -> None:
    from . import report

    if fmt == "json":
        click.echo(report.dumps(report.result_json(result)))
    elif fmt == "markdown":
        assert result.plan is not None
        click.echo(report.plan_markdown(result.plan, result.refused), nl=False)
    elif result.plan is not None and result.status in ("planned", "no-changes"):
        ctx.console.print(report.plan_renderable(result.plan, result.refused, show_all))
    else:
        ctx.console.print(report.result_renderable(result))


def _finish(ctx: Ctx, result: RunResult, fmt: str) -> None:
    from .sync import refusal

    _show(ctx, result, fmt)
    if result.status == "refused":
        raise refusal(result)
    if result.exit_code:
        ctx.err.print(f"[bold red]Error:[/bold red] {result.error}")
        sys.exit(result.exit_code)


@main.command()
@click.option("--limit", default=20, show_default=True, help="How many runs to show.")
@click.option("--profile", "profile_name", help="Only this profile [default: the configured one].")
@click.option("--all-profiles", is_flag=True, help="Runs of every profile in the state file.")
@click.option("--run", "run_id", help="Show the journal of one run.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def history(ctx: Ctx, limit: int, profile_name: str | None, all_profiles: bool,
            run_id: str | None, fmt: str) -> None:
    """Past runs with their counts and failures, from the state store."""
    from rich.markup import escape

    from . import report
    from .report import printable

    with errors_to_exit(ctx):
        store = ctx.store()
        if run_id:
            rows = store.journal(run_id)
            if fmt == "json":
                click.echo(report.dumps(rows))
                return
            for r in rows:
                mark = {"ok": "[green]ok[/green]", "failed": "[red]FAILED[/red]"}.get(
                    r["status"], r["status"])
                ctx.console.print(f"{r['seq']:>5} {mark} {r['kind']} "
                                  f"{escape(printable(r['subject']))} "
                                  f"{escape(printable(r['error']))}")
            return
        name = None if all_profiles else (profile_name or ctx.profile().name)
        runs = store.runs(name, limit)
        if fmt == "json":
            click.echo(report.dumps([r.__dict__ if hasattr(r, "__dict__") else _row(r)
                                     for r in runs]))
        else:
            ctx.console.print(report.history_table(runs, show_profile=all_profiles))


def _row(r: Any) -> dict[str, Any]:
    return {k: getattr(r, k) for k in r.__slots__}


@main.group("config")
def config_group() -> None:
    """Show or validate the configuration."""


@config_group.command("show")
@click.option("--format", "fmt", type=click.Choice(["toml", "json"]), default="toml",
              show_default=True)
@pass_ctx
def config_show(ctx: Ctx, fmt: str) -> None:
    """The effective configuration (file + environment), secrets redacted."""
    with errors_to_exit(ctx):
        data = ctx.profile().redacted()
        if fmt == "json":
            click.echo(json.dumps(data, indent=2, default=str))
        else:
            click.echo(_toml(data))


@config_group.command("validate")
@pass_ctx
def config_validate(ctx: Ctx) -> None:
    """Check the configuration without connecting anywhere."""
    with errors_to_exit(ctx):
        profile = ctx.profile()
        if profile.settings.migrate:
            from .migrate.presets import migrate_settings

            migrate_settings(profile.settings.migrate)
        ctx.console.print(f"[green]Configuration is valid[/green] ({profile.path}): "
                          f"profile {profile.name!r}, source {profile.source.type!r}, "
                          f"target {profile.target.type!r}.")


@main.command()
@pass_ctx
def connectors(ctx: Ctx) -> None:
    """List the installed connectors (sources) and targets."""
    from rich.table import Table

    from . import registry

    table = Table("kind", "type", "provided by", "class")
    for kind, group in (("source", registry.CONNECTORS), ("target", registry.TARGETS)):
        for name, plugin in registry.available(group).items():
            table.add_row(kind, name, plugin.distribution, plugin.value)
    ctx.console.print(table)


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
    from . import logs
    from .daemon import Daemon
    from .settings import config_path, load, secret_values

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

    from .settings import config_path, load
    from .state import StateStore

    with errors_to_exit(ctx):
        rows = []
        for path in [Path(c) for c in configs] or [config_path(ctx.config)]:
            profile = load(path)
            store = StateStore(profile.settings.state.path)
            last = store.runs(profile.name, 1)
            info = store.get_meta(profile.name, "daemon", {}) or {}
            frozen = store.get_meta(profile.name, "frozen")
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


@main.command("import-bwdc")
@click.argument("data_json", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the profile here (refuses to overwrite) instead of to stdout.")
@pass_ctx
def import_bwdc(ctx: Ctx, data_json: str, out: str | None) -> None:
    """Convert Bitwarden Directory Connector's data.json into a dirconnector profile.

    Every option dirconnector understands is mapped; the others are listed. Secrets
    are never written: they become *_env references to set before the first run.
    """
    from .bwdc.convert import convert
    from .errors import ConfigError

    with errors_to_exit(ctx):
        try:
            data = json.loads(Path(data_json).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{data_json}: not a readable JSON file: {exc}") from exc
        text, unmapped = convert(data)
        if out:
            target = Path(out)
            if target.exists():
                raise ConfigError(f"{out} already exists; not overwriting it")
            target.write_text(text, encoding="utf-8")
            target.chmod(0o600)
            ctx.err.print(f"Wrote {out}. Check it with `dirconnector --config {out} "
                          f"config validate`, then `plan`.")
        else:
            click.echo(text, nl=False)
        for item in unmapped:
            ctx.err.print(f"[yellow]not mapped:[/yellow] {item}")


@main.group("migrate")
def migrate_group() -> None:
    """Hand provisioning to the identity provider's own SCIM (plan, apply, rollback).

    \b
      dirconnector migrate plan --to-idp entra --scope-group "Bitwarden users"
      dirconnector migrate apply --to-idp entra --scope-group "Bitwarden users"
      dirconnector migrate rollback --map FILE
    """


IDPS = click.Choice(["entra", "okta", "onelogin", "jumpcloud", "ping", "custom"])


@migrate_group.command("plan")
@click.option("--to-idp", "idp", type=IDPS, help="The IdP taking over [default: [migrate] idp].")
@click.option("--scope-group", "scope", multiple=True, metavar="NAME",
              help="A group assigned to the app in the IdP (repeatable) [default: [migrate] "
                   "scope_groups; none: every user read is in scope].")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("--all", "show_all", is_flag=True, help="List every member, however many.")
@pass_ctx
def migrate_plan_cmd(ctx: Ctx, idp: str | None, scope: tuple[str, ...], fmt: str,
                     show_all: bool) -> None:
    """What the IdP will find, adopt, duplicate or leave alone. Writes nothing."""
    from .migrate import render as render
    from .migrate.apply import Migration

    with errors_to_exit(ctx):
        profile = ctx.profile()
        migration = Migration(profile, ctx.store())
        plan = migration.plan(idp, scope)
        when = migration.schedule
        if fmt == "json":
            click.echo(render.dumps(render.plan_json(plan, profile.name, when)))
        elif fmt == "markdown":
            click.echo(render.plan_markdown(plan, profile.name, when), nl=False)
        else:
            ctx.console.print(render.plan_renderable(plan, profile.name, show_all, when))


@migrate_group.command("apply")
@click.option("--to-idp", "idp", type=IDPS, help="The IdP taking over [default: [migrate] idp].")
@click.option("--scope-group", "scope", multiple=True, metavar="NAME",
              help="A group assigned to the app in the IdP (repeatable).")
@click.option("--map", "map_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Where to write the id map (never overwritten) [default: beside the "
                   "state database].")
@click.option("--force", is_flag=True,
              help="Apply even with conflicts (they are left as they are).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@pass_ctx
def migrate_apply_cmd(ctx: Ctx, idp: str | None, scope: tuple[str, ...], map_file: str | None,
                      force: bool, fmt: str) -> None:
    """Write the id map, set the IdP's externalIds on the server, freeze the profile."""
    from .migrate.apply import Migration

    with errors_to_exit(ctx):
        profile = ctx.profile()
        out = Migration(profile, ctx.store()).apply(
            idp, scope, map_path=Path(map_file) if map_file else None, force=force)
        _migrate_outcome(ctx, out, fmt, "apply")


@migrate_group.command("rollback")
@click.option("--map", "map_file", required=True, type=click.Path(exists=True, dir_okay=False),
              metavar="FILE", help="The id map `migrate apply` wrote.")
@click.option("--force", is_flag=True,
              help="Restore ids the IdP has changed since, and accept another map.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@pass_ctx
def migrate_rollback_cmd(ctx: Ctx, map_file: str, force: bool, fmt: str) -> None:
    """Put the map's old external ids back and unfreeze the profile."""
    from .migrate.apply import Migration

    with errors_to_exit(ctx):
        out = Migration(ctx.profile(), ctx.store()).rollback(Path(map_file), force=force)
        _migrate_outcome(ctx, out, fmt, "rollback")


def _migrate_outcome(ctx: Ctx, out: Any, fmt: str, verb: str) -> None:
    from .migrate import render as render

    if fmt == "json":
        click.echo(render.dumps(render.outcome_json(out, verb)))
    else:
        for line in render.outcome_lines(out, verb):
            ctx.console.print(line, markup=False)
    if out.exit_code:
        ctx.err.print(f"[bold red]Error:[/bold red] {len(out.failed)} change(s) did not "
                      f"apply; see above")
        sys.exit(out.exit_code)


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for `config show` (tables after scalars)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((f"{prefix}{key}", value))
        elif value is not None:
            lines.append(f"{key} = {json.dumps(value, default=str)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        lines.append(_toml(table, prefix=f"{name}.").strip("\n"))
    return "\n".join(lines) + "\n"


def entry(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point."""
    main.main(args=list(argv) if argv is not None else None, prog_name="dirconnector")
    raise SystemExit(0)  # pragma: no cover  # main.main exits itself


if __name__ == "__main__":  # pragma: no cover
    entry()
