"""ConnectorState: a connector's own key-value space in the state store."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any


class ConnectorState:
    """JSON values by key, for delta tokens and cached snapshots.

    Writes are staged and reach the store only when the run commits them, so a run
    that fails half-way never leaves a delta token that skips changes it did not apply.
    """

    def __init__(
        self,
        values: MutableMapping[str, Any] | None = None,
        *,
        force_full: bool = False,
        on_commit: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._values: dict[str, Any] = dict(values or {})
        self._staged: dict[str, Any] = {}
        self.force_full = force_full
        """True when the operator asked for a full read (``--full``, full_reconcile)."""
        self._on_commit = on_commit

    def get(self, key: str, default: Any = None) -> Any:
        if key in self._staged:
            return self._staged[key]
        return self._values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Stage a value (None deletes it)."""
        self._staged[key] = value

    def commit(self) -> None:
        """Make staged values durable (the runner calls this after a good run)."""
        self._values.update(self._staged)
        for k, v in self._staged.items():
            if v is None:
                self._values.pop(k, None)
        if self._on_commit is not None:
            self._on_commit(dict(self._staged))
        self._staged.clear()

    def snapshot(self) -> dict[str, Any]:
        merged = dict(self._values)
        merged.update(self._staged)
        return {k: v for k, v in merged.items() if v is not None}
