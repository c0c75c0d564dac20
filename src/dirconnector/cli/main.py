"""The ``dirconnector`` command group and the console-script entry point."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import click

from .. import __version__
from .context import Ctx


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
    from .. import logs

    logs.setup(verbose=verbose, quiet=quiet, fmt=log_format)
    click_ctx.obj = Ctx(config, verbose, quiet, log_format)


def entry(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point."""
    main.main(args=list(argv) if argv is not None else None, prog_name="dirconnector")
    raise SystemExit(0)  # pragma: no cover  # main.main exits itself


if __name__ == "__main__":  # pragma: no cover
    entry()
