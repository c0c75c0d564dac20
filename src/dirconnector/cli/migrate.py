"""migrate plan / apply / rollback: handing provisioning to the IdP's SCIM."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .context import FORMATS, Ctx, errors_to_exit, pass_ctx
from .main import main


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
    from ..migrate import render as render
    from ..migrate.apply import Migration

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
    from ..migrate.apply import Migration

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
    from ..migrate.apply import Migration

    with errors_to_exit(ctx):
        out = Migration(ctx.profile(), ctx.store()).rollback(Path(map_file), force=force)
        _migrate_outcome(ctx, out, fmt, "rollback")


def _migrate_outcome(ctx: Ctx, out: Any, fmt: str, verb: str) -> None:
    from ..migrate import render as render

    if fmt == "json":
        click.echo(render.dumps(render.outcome_json(out, verb)))
    else:
        for line in render.outcome_lines(out, verb):
            ctx.console.print(line, markup=False)
    if out.exit_code:
        ctx.err.print(f"[bold red]Error:[/bold red] {len(out.failed)} change(s) did not "
                      f"apply; see above")
        sys.exit(out.exit_code)
