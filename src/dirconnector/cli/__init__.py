"""The command line: the only package that prints.

``main`` is the click group (``main.py``); each module adds its commands to it:
``run`` (check, plan, apply, sync), ``admin`` (history, config, connectors,
import-bwdc), ``service`` (daemon, status), ``migrate``. Exit codes: 0 ok or no
changes; 1 error; 2 changes pending (``plan --detailed-exitcode``); 3 refused by the
safety guard.
"""

from __future__ import annotations

from . import admin, migrate, run, service  # noqa: F401  # they register their commands
from .context import Ctx, errors_to_exit
from .main import entry, main

__all__ = ["Ctx", "entry", "errors_to_exit", "main"]
