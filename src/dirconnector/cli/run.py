"""check, plan, apply, sync: the pipeline's commands."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..state import StateStore
    from ..sync import RunResult

import click

from .context import FORMATS, Ctx, errors_to_exit, pass_ctx
from .main import main


@main.command()
@pass_ctx
def check(ctx: Ctx) -> None:
    """Connect to the directory and the server; show counts and any problem."""
    from ..report import check_renderable, preview_renderable
    from ..sync import build_connector, build_target

    with errors_to_exit(ctx):
        profile = ctx.profile()
        ok = True
        for title, build in (("source: " + profile.source.type, build_connector),
                             ("target: " + profile.target.type, build_target)):
            from ..checks import CheckReport
            from ..errors import DirconnectorError

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
        runner = ctx.runner(ctx.store())
        from ..connectors import HasChangeStream

        if isinstance(runner.connector, HasChangeStream):
            mode = runner.connector.stream_mode()
            runner.connector.close()
            ctx.console.print(f"watch mode: follows changes by [bold]{mode.mode}[/bold]"
                              + (f" ({mode.reason})" if mode.reason else ""))
        else:
            ctx.console.print(f"watch mode: marker (the {profile.source.type} connector has "
                              f"no change stream; watch polls and reads in full on a change)")
        plan, refused = runner.preview()
        ctx.console.print(preview_renderable(plan, refused))
        if refused:
            ctx.err.print("[bold red]The safety guard would refuse the next sync[/bold red] "
                          "(see above; `dirconnector plan` shows it whole).")
            sys.exit(3)
        ctx.console.print("[bold green]All checks passed.[/bold green]")


@main.command()
@click.option("--format", "fmt", type=click.Choice([*FORMATS.choices, "html"]), default="table",
              show_default=True, help="html: one self-contained page (with --out, to that "
              "file) to review in a browser or attach to a ticket.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Save the plan as JSON, to apply later with `dirconnector apply FILE` "
                   "(with --format html: the HTML report).")
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
        if fmt == "html":
            from ..report_html import context_of, plan_page

            html = plan_page(result.plan, context_of(ctx.profile()), result.refused)
            if out:
                Path(out).write_text(html, encoding="utf-8")
                ctx.err.print(f"[dim]Wrote the plan report to {out}; open it in a browser.[/dim]")
            else:
                click.echo(html, nl=False)
            if detailed_exitcode and result.plan.changes:
                sys.exit(2)
            return
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
    from ..plan import Plan

    with errors_to_exit(ctx):
        store = ctx.store()
        runner = ctx.runner(store)
        if plan_file is None:
            result = _notifying(ctx, store, lambda: runner.run("sync", force=force,
                                                               command="apply"))
        else:
            try:
                data = json.loads(Path(plan_file).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                from ..errors import ConfigError

                raise ConfigError(f"plan file {plan_file}: cannot read it: {exc}") from exc
            saved = Plan.from_json(data)
            result = _notifying(ctx, store, lambda: runner.apply_saved(saved, force=force))
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
        runner = ctx.runner(store)
        result = _notifying(ctx, store, lambda: runner.run(
            "plan" if dry_run else "sync", force=force, full=full,
            command="sync --dry-run" if dry_run else "sync"))
        _finish(ctx, result, fmt)


def _notifying(ctx: Ctx, store: StateStore, run: Callable[[], RunResult]) -> RunResult:
    """``run()``, then its notifications ([notify]), sent in the background; the command
    waits for them at its very end, at most ``[notify] exit_wait`` seconds."""
    from ..errors import DirconnectorError

    settings = ctx.profile().settings.notify
    if not settings.any:
        return run()
    started = time.time()
    try:
        result = run()
    except DirconnectorError as exc:
        _notify(ctx, store, None, str(exc), started)
        raise
    _notify(ctx, store, result, result.error, started)
    return result


def _notify(ctx: Ctx, store: StateStore, result: RunResult | None, error: str,
            started: float) -> None:
    import logging

    from ..notify import build, events_for, history_before
    from ..notify_send import Notifier

    profile = ctx.profile()
    settings = profile.settings.notify
    status: str
    try:
        if result is not None:
            run_id, status, counts = result.run_id, result.status, result.counts()
        else:  # the run raised: its row, if it got as far as starting one
            rows = store.runs(profile.name, 1)
            if not rows or rows[0].started < started - 1:
                return
            run_id, status, counts = rows[0].id, rows[0].status, rows[0].counts
        previous, streak = history_before(store.runs(profile.name, settings.failing_after + 50),
                                          run_id)
        applied = sum(1 for o in result.report.outcomes if o.status == "ok") \
            if result is not None and result.report is not None else 0
        events = events_for(previous, status, streak, settings.failing_after, applied)
        report: Callable[[], str] | None = None
        if result is not None and result.plan is not None:
            from ..report_html import context_of
            from ..report_runs import result_page

            done = result

            def report() -> str:
                return result_page(done, context_of(profile))

        notices = build(profile, events, status=status, run_id=run_id, error=error,
                        refused=result.refused if result else [], counts=counts,
                        failures=streak, report=report)
        if not notices:
            return
        notifier = Notifier()
        notifier.submit(notices, settings)
    except Exception:  # telling people must never fail the sync
        logging.getLogger("dirconnector.notify").exception("could not queue notifications")
        return

    def wait() -> None:
        if not notifier.drain(settings.exit_wait):
            logging.getLogger("dirconnector.notify").error(
                "%d notification(s) not sent within [notify] exit_wait (%.0fs)",
                notifier.pending, settings.exit_wait)

    click.get_current_context().call_on_close(wait)


def _show(ctx: Ctx, result: RunResult, fmt: str, show_all: bool = False) -> None:
    from .. import report

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
    from ..sync import refusal

    _show(ctx, result, fmt)
    if result.status == "refused":
        raise refusal(result)
    if result.exit_code:
        ctx.err.print(f"[bold red]Error:[/bold red] {result.error}")
        sys.exit(result.exit_code)
