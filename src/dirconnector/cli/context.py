"""What every command shares: the context object, the progress bar, the error mapping.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from ..settings import Profile
    from ..state import StateStore
    from ..sync import Runner

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
            from .. import logs, settings

            self._profile = settings.load(self.config)
            logs.add_secrets(settings.secret_values(self._profile))
            for warning in self._profile.warnings:
                logging.getLogger("dirconnector").warning(warning)
        return self._profile

    def store(self) -> StateStore:
        """The profile's state store, closed when the command ends (however it ends): an
        in-process caller (tests, an embedding program) must not collect open files."""
        from ..state import open_store

        store = open_store(self.profile().settings.state)
        click.get_current_context().call_on_close(store.close)
        return store

    def runner(self, store: StateStore) -> Runner:
        from ..sync import Runner

        interactive = sys.stderr.isatty() and not self.quiet
        err = self.err

        def progress(message: str) -> None:
            if interactive:
                err.print(f"[dim]… {message}[/dim]")
            logging.getLogger("dirconnector.run").info(message)

        bar = ApplyBar(err) if interactive else None
        if bar is not None:
            click.get_current_context().call_on_close(bar.close)
        return Runner(self.profile(), store, progress=progress, applied=bar)


class ApplyBar:
    """A progress bar for long applies on a terminal, fed by the runner's ``applied``
    callback (done, total); it appears only when an apply has 20 changes or more."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._bar: Progress | None = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if total < 20:
            return
        if self._bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._bar = Progress("[progress.description]{task.description}", BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task("applying", total=total)
        self._bar.update(self._task, completed=done)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextlib.contextmanager
def errors_to_exit(ctx: Ctx) -> Iterator[None]:
    """Map the project's errors to a one-line message, a hint, and the exit code."""
    from ..errors import DirconnectorError

    try:
        yield
    except DirconnectorError as exc:
        from rich.markup import escape  # messages name TOML tables: [state], [sync]

        from .. import logs

        ctx.err.print(f"[bold red]Error:[/bold red] {escape(logs.redact(str(exc)))}",
                      markup=True)
        if exc.hint:
            ctx.err.print(f"[dim]Hint: {escape(logs.redact(exc.hint))}[/dim]")
        if ctx.verbose > 1:
            logging.getLogger("dirconnector").debug("traceback", exc_info=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        ctx.err.print("Interrupted.")
        sys.exit(130)


pass_ctx = click.make_pass_decorator(Ctx)
