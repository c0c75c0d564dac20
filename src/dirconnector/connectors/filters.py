"""The ``include:``/``exclude:`` filter language the cloud connectors share (bwdc's syntax).

``include:a@x.com,b@x.com | <native query>``: the part before the first ``|`` keeps
(``include``) or drops (``exclude``) the listed values, compared case-insensitively;
the part after it is passed to the vendor API untouched. Unlike bwdc, a malformed
set clause is an error, not silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class SetFilter:
    """A parsed filter: an include or exclude set, and the native query."""

    mode: Literal["all", "include", "exclude"] = "all"
    values: frozenset[str] = frozenset()
    native: str = ""

    def keeps(self, *candidates: str) -> bool:
        """True if an object known by any of ``candidates`` passes the set clause."""
        if self.mode == "all":
            return True
        hit = any(c.strip().casefold() in self.values for c in candidates if c)
        return hit if self.mode == "include" else not hit


def parse_filter(text: str | None, field: str, modes: Iterable[str] = ("include", "exclude"),
                 ) -> SetFilter:
    """Parse ``text``; raise ValueError naming ``field`` when it is malformed."""
    if not text or not text.strip():
        return SetFilter()
    head, _, native = text.partition("|")
    head = head.strip()
    native = native.strip()
    if not head:
        return SetFilter(native=native)
    mode, colon, values = head.partition(":")
    mode = mode.strip().lower()
    allowed = tuple(modes)
    if not colon or mode not in allowed:
        raise ValueError(f"{field}: expected '{allowed[0]}:a,b' or '{allowed[-1]}:a,b' before "
                         f"'|', got {head!r}")
    items = frozenset(v.strip().casefold() for v in values.split(",") if v.strip())
    if not items:
        raise ValueError(f"{field}: '{mode}:' lists no values")
    return SetFilter(mode, items, native)  # type: ignore[arg-type]  # mode checked above
