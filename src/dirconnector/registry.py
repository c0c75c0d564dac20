"""Entry-point registry: connectors and targets load lazily, by the path a plugin takes."""

from __future__ import annotations

import difflib
import functools
import importlib
from dataclasses import dataclass
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
        module, _, attr = self.value.partition(":")
        try:
            found: Any = importlib.import_module(module)
            for part in attr.split(".") if attr else ():
                found = getattr(found, part)
            return found
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
    from importlib.metadata import entry_points

    found: dict[str, Plugin] = {}
    for ep in entry_points(group=group):
        dist = ep.dist.name if ep.dist is not None else "?"
        found.setdefault(ep.name, Plugin(ep.name, group, ep.value, dist))
    return dict(sorted(found.items()))


BUILTIN: dict[str, dict[str, str]] = {
    CONNECTORS: {"file": "dirconnector.connectors.file:FileConnector",
                 "ldap": "dirconnector.connectors.ldap:LdapConnector",
                 "azure": "dirconnector.connectors.azure:AzureConnector",
                 "entra": "dirconnector.connectors.azure:AzureConnector",
                 "okta": "dirconnector.connectors.okta:OktaConnector",
                 "onelogin": "dirconnector.connectors.onelogin:OneLoginConnector",
                 "google": "dirconnector.connectors.google:GoogleConnector"},
    TARGETS: {"scim": "dirconnector.targets.scim:ScimTarget",
              "bitwarden": "dirconnector.targets.bitwarden:BitwardenTarget"},
}
"""This package's own entry points (pyproject.toml; a test keeps the two equal): found
without scanning every installed distribution's metadata (35 ms of each start-up)."""


def find(group: str, name: str) -> Plugin:
    """The plugin called ``name``, or a ConfigError that suggests the closest one."""
    if name in BUILTIN[group]:
        return Plugin(name, group, BUILTIN[group][name], "dirconnector")
    plugins = available(group)   # cached: never change the dict it returns
    if name in plugins:
        return plugins[name]
    section = "source" if group == CONNECTORS else "target"
    close = difflib.get_close_matches(name, plugins, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"installed: {', '.join(plugins) or 'none'}"
    raise ConfigError(f"{section}.type: unknown {section} type {name!r}", hint=hint)
