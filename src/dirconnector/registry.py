"""Entry-point registry: connectors and targets load lazily, by the path a plugin takes."""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .errors import ConfigError

CONNECTORS = "dirconnector.connectors"
TARGETS = "dirconnector.targets"


@dataclass(frozen=True, slots=True)
class Plugin:
    """One installed connector or target."""

    name: str
    group: str
    value: str
    distribution: str

    def load(self) -> Any:
        """Import the class; a missing optional dependency becomes a ConfigError with the extra."""
        try:
            return EntryPoint(self.name, self.value, self.group).load()
        except ImportError as exc:
            missing = exc.name or str(exc)
            raise ConfigError(
                f"{'source' if self.group == CONNECTORS else 'target'}.type: {self.name!r} needs "
                f"the Python package {missing!r}, which is not installed",
                hint=f"pip install 'dirconnector[{_extra(self.name)}]'",
            ) from exc


def _extra(name: str) -> str:
    return {"entra": "azure", "ldap": "ldap"}.get(name, name)


@functools.cache
def available(group: str) -> dict[str, Plugin]:
    """Installed plugins of a group, by name (read once per process: each scan of the
    installed distributions' metadata costs about 12 ms, and a run looks twice)."""
    found: dict[str, Plugin] = {}
    for ep in entry_points(group=group):
        dist = ep.dist.name if ep.dist is not None else "?"
        found.setdefault(ep.name, Plugin(ep.name, group, ep.value, dist))
    return dict(sorted(found.items()))


def find(group: str, name: str) -> Plugin:
    """The plugin called ``name``, or a ConfigError that suggests the closest one."""
    plugins = available(group)   # cached: never change the dict it returns
    if name in plugins:
        return plugins[name]
    section = "source" if group == CONNECTORS else "target"
    close = difflib.get_close_matches(name, plugins, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"installed: {', '.join(plugins) or 'none'}"
    raise ConfigError(f"{section}.type: unknown {section} type {name!r}", hint=hint)
