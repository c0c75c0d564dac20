"""history, config show / validate, connectors, import-bwdc: looking and setting up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .context import Ctx, errors_to_exit, pass_ctx
from .main import main

if TYPE_CHECKING:
    from ..settings import Profile


@main.command()
@click.option("--limit", default=20, show_default=True, help="How many runs to show.")
@click.option("--profile", "profile_name", help="Only this profile [default: the configured one].")
@click.option("--all-profiles", is_flag=True, help="Runs of every profile in the state file.")
@click.option("--run", "run_id", help="Show the journal of one run.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "html"]), default="table",
              help="html: a self-contained page (runs over time; with --run, the run's report).")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="With --format html: write the page here instead of to stdout.")
@pass_ctx
def history(ctx: Ctx, limit: int, profile_name: str | None, all_profiles: bool,
            run_id: str | None, fmt: str, out: str | None) -> None:
    """Past runs with their counts and failures, from the state store."""
    from rich.markup import escape

    from .. import report
    from ..report import printable

    with errors_to_exit(ctx):
        store = ctx.store()
        if fmt == "html":
            _history_html(ctx, store, run_id, None if all_profiles else (
                profile_name or ctx.profile().name), limit, out)
            return
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


def _history_html(ctx: Ctx, store: Any, run_id: str | None, profile: str | None, limit: int,
                  out: str | None) -> None:
    from .. import report_html, report_runs
    from ..errors import ConfigError

    if run_id:
        row = store.run(run_id)
        if row is None:
            raise ConfigError(f"no run {run_id!r} in {store.path}",
                              hint="`dirconnector history --all-profiles` lists the runs")
        context = report_html.context_of(ctx.profile())
        if row.profile != context.profile:  # a run of another profile in the same state
            context = report_html.ReportContext(row.profile, "?", "?")
        html = report_runs.run_page(row, store.journal_entries(run_id), context)
    else:
        html = report_runs.history_page(store.runs(profile, limit),
                                        report_html.context_of(ctx.profile()))
    if out:
        Path(out).write_text(html, encoding="utf-8")
        ctx.err.print(f"[dim]Wrote {out}; open it in a browser.[/dim]")
    else:
        click.echo(html, nl=False)


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
    """Check the configuration; connects only to check an attribute mapping against the
    target server's schema, when the server is reachable."""
    with errors_to_exit(ctx):
        profile = ctx.profile()
        if profile.settings.migrate:
            from ..migrate.presets import migrate_settings

            migrate_settings(profile.settings.migrate)
        _validate_mapping(ctx, profile)
        ctx.console.print(f"[green]Configuration is valid[/green] ({profile.path}): "
                          f"profile {profile.name!r}, source {profile.source.type!r}, "
                          f"target {profile.target.type!r}.")


def _validate_mapping(ctx: Ctx, profile: Profile) -> None:
    """Refuse a [target.mapping] the target's server does not declare or marks read-only."""
    from ..errors import ConfigError, DirconnectorError
    from ..settings import MappedTargetSettings
    from ..sync import build_target
    from ..targets import ChecksMapping

    if not isinstance(profile.target, MappedTargetSettings) or not profile.target.mapping:
        return
    target = build_target(profile)
    if not isinstance(target, ChecksMapping):
        return
    try:
        problems = target.mapping_problems()
    except DirconnectorError as exc:
        ctx.console.print(f"[yellow]The attribute mapping was not checked against the server "
                          f"(unreachable: {exc}).[/yellow]")
        return
    if problems:
        raise ConfigError("; ".join(problems))
    if problems is None:
        ctx.console.print("[yellow]The server publishes no /Schemas; the attribute mapping "
                          "was not checked against it.[/yellow]")


@main.command()
@pass_ctx
def connectors(ctx: Ctx) -> None:
    """List the installed connectors (sources) and targets."""
    from rich.table import Table

    from .. import registry

    table = Table("kind", "type", "provided by", "class")
    for kind, group in (("source", registry.CONNECTORS), ("target", registry.TARGETS)):
        for name, plugin in registry.available(group).items():
            table.add_row(kind, name, plugin.distribution, plugin.value)
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
    from ..bwdc.convert import convert
    from ..errors import ConfigError

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
