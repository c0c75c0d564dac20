"""CheckReport: what `dirconnector check` shows for a source or a target."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CheckItem:
    """One verified fact, or one problem with what to do about it."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(slots=True)
class CheckReport:
    """Items in the order they were checked, plus counts the check could make."""

    items: list[CheckItem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.items.append(CheckItem(name, ok, detail))
        return ok

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.items)
