"""Outcome: what happened to one change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .plan import Change

Status = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one change, as the journal records it."""

    change: Change
    status: Status
    error: str = ""
    ref: str = ""
    """The server id the change produced or touched (a created account's id)."""
    attempts: int = 1
