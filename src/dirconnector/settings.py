"""Settings: one TOML file plus DIRCONNECTOR_* environment overrides.

The file is found at ``--config``, else ``$DIRCONNECTOR_CONFIG``, else
``./dirconnector.toml``. Any key can be overridden from the environment with
``__`` between levels: ``DIRCONNECTOR_SOURCE__URL``, ``DIRCONNECTOR_SYNC__REMOVE_MISSING``.

``[source]`` and ``[target]`` are validated by the model of the plugin their
``type`` names; every plugin model derives from :class:`PluginSettings`, which
forbids unknown keys and resolves secrets given as ``name``, ``name_env`` or
``name_file``. Every error names the TOML path of the field.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from .errors import ConfigError
from .notify_settings import DaemonSettings, NotifySettings

ENV_PREFIX = "DIRCONNECTOR_"
DEFAULT_FILE = "dirconnector.toml"


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """ "90s", "15m", "1h30m", "1d" (a bare number is seconds); ValueError otherwise."""
    compact = re.sub(r"\s+", "", str(text).lower())
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration like '90s', '30m', '1h30m' or '1d'")
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def _duration_before(value: object) -> object:
    return parse_duration(str(value)) if isinstance(value, str | int | float) and not isinstance(
        value, bool) else value


Duration = Annotated[timedelta, BeforeValidator(_duration_before)]
"""A settings field written as "24h", "15m", "1h30m" or a number of seconds."""


class PluginSettings(BaseModel):
    """Base of every ``[source]`` and ``[target]`` model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    """The plugin name (``ldap``, ``scim``, ...)."""

    @model_validator(mode="before")
    @classmethod
    def _resolve_secrets(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return resolve_secrets(cls, data)

    @classmethod
    def secret_fields(cls) -> tuple[str, ...]:
        return tuple(name for name, f in cls.model_fields.items()
                     if f.annotation is not None and "SecretStr" in str(f.annotation))


class HttpPluginSettings(PluginSettings):
    """Options every connector or target that speaks HTTPS has."""

    ca_file: Path | None = None
    """PEM bundle of the CA that signed the server's certificate (else the system store)."""
    verify_tls: bool = True
    """Verify the server's certificate. Turning it off logs a warning on every run."""
    timeout: float = Field(30.0, gt=0)
    """Seconds to wait for one HTTP response."""

    @model_validator(mode="after")
    def _ca_exists(self) -> HttpPluginSettings:
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file: {self.ca_file} does not exist")
        return self

    @property
    def verify(self) -> bool | str:
        """The ``verify`` argument for requests."""
        if not self.verify_tls:
            return False
        return str(self.ca_file) if self.ca_file else True


def resolve_secrets(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """Turn ``x_env`` / ``x_file`` keys into the value of secret field ``x``."""
    data = dict(data)
    for name, f in model.model_fields.items():
        if f.annotation is None or "SecretStr" not in str(f.annotation):
            continue
        given = [k for k in (name, f"{name}_env", f"{name}_file") if data.get(k) not in (None, "")]
        if len(given) > 1:
            raise ValueError(f"{given[0]} and {given[1]} both set; give the secret one way")
        env_name = data.pop(f"{name}_env", None)
        file_name = data.pop(f"{name}_file", None)
        if env_name:
            value = os.environ.get(str(env_name))
            if not value:
                raise ValueError(f"{name}_env: environment variable {env_name} is not set")
            data[name] = value
        elif file_name:
            path = Path(str(file_name)).expanduser()
            try:
                data[name] = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"{name}_file: cannot read {path}: {exc.strerror}") from exc
            if not data[name]:
                raise ValueError(f"{name}_file: {path} is empty")
    return data


class SyncSettings(BaseModel):
    """``[sync]``: what a run may change, and the safety limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    remove_disabled: bool = True
    remove_missing: bool = False
    deprovision: Literal["revoke", "delete"] = "revoke"
    manage: Literal["linked", "external_id", "all"] = "linked"
    sync_groups: bool = True
    delete_missing_groups: bool = False
    max_revocations: int = Field(25, ge=0)
    max_revocation_ratio: float = Field(0.10, ge=0.0, le=1.0)
    min_source_ratio: float = Field(0.9, ge=0.0, le=1.0)
    max_membership_removals: int = Field(100, ge=0)
    max_membership_removal_ratio: float = Field(0.10, ge=0.0, le=1.0)
    guard_window: Duration = timedelta(hours=1)
    """Watch mode: the limits above count the revocations and membership removals of
    every batch applied within this window, so a slow stream of deletes is refused like
    a mass delete."""
    batch_window: Duration = timedelta(seconds=1)
    """Watch mode: how long to gather changes after the first one before applying them
    (a burst goes out in a few requests)."""
    takeover_from: Literal["none", "bwdc"] = "none"
    """Recognise the members and groups another tool created by the keys it stored, and
    relink them to this connector's ids (takeover.py); "none": no relinking."""


SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class StateSettings(BaseModel):
    """``[state]``: where runs, the journal and connector caches live.

    SQLite at ``path`` by default; PostgreSQL when ``url`` is set (several hosts sharing
    the profiles). ``url`` and ``password`` are secrets: each may be given as
    ``url_env`` / ``url_file`` and ``password_env`` / ``password_file``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("dirconnector"))
                       / "state.db")
    lock_timeout: float = Field(0.0, ge=0.0)
    """Seconds to wait for another run of the profile to finish; 0 refuses at once."""
    url: SecretStr | None = None
    """``postgresql://user@host:5432/dbname`` (libpq URI; its query may carry sslmode)."""
    password: SecretStr | None = None
    """The PostgreSQL password, when the URL has none."""
    sslmode: SslMode | None = None
    """libpq's sslmode; unset: the URL's, else libpq's default ("prefer")."""
    ssl_ca_file: Path | None = None
    """PEM bundle of the CA that signed PostgreSQL's certificate (libpq sslrootcert)."""
    connect_timeout: float = Field(10.0, gt=0)
    """Seconds to wait for PostgreSQL to accept a connection."""
    lock_lease: Duration = timedelta(seconds=30)
    """PostgreSQL: how long a replica cut from the database may go unnoticed. A run stops
    writing within half of it; the server frees a dead session's locks only after it."""

    @model_validator(mode="before")
    @classmethod
    def _resolve_secrets(cls, data: Any) -> Any:
        return resolve_secrets(cls, data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _postgres_url(self) -> StateSettings:
        if self.url is not None and not self.url.get_secret_value().startswith(
                ("postgresql://", "postgres://")):
            raise ValueError("url: not a postgresql:// URL")
        if self.url is None and (self.password is not None or self.sslmode is not None):
            raise ValueError("password and sslmode apply to PostgreSQL: set url too")
        if self.lock_lease < timedelta(seconds=3):
            raise ValueError("lock_lease: at least 3s")
        return self


class ScheduleSettings(BaseModel):
    """``[schedule]``: when the daemon runs this profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: str | None = None
    cron: str | None = None
    jitter: str = "0s"
    full_reconcile: str = "24h"
    mode: Literal["interval", "watch"] = "interval"
    """``watch``: follow the directory's change stream and apply each change within
    seconds (a full reconcile every ``full_reconcile``); ``interval``: run on the schedule."""


class Settings(BaseModel):
    """The whole configuration of one profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str = "default"
    source: dict[str, Any] = Field(default_factory=dict)
    target: dict[str, Any] = Field(default_factory=dict)
    sync: SyncSettings = SyncSettings()
    state: StateSettings = StateSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    migrate: dict[str, Any] = Field(default_factory=dict)
    notify: NotifySettings = NotifySettings()
    daemon: DaemonSettings = DaemonSettings()


def environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``DIRCONNECTOR_<KEY>__<KEY>`` overrides as a nested table (names lower-cased).

    Only names whose first key is a top-level section or key count, so the tool's
    other variables (``DIRCONNECTOR_CONFIG``) are not mistaken for settings. A value
    that looks like a JSON list or object is decoded (``'["ldaps://a", "ldaps://b"]'``);
    every other value stays a string, which validation converts (``"7"``, ``"true"``).
    """
    out: dict[str, Any] = {}
    for name, value in (os.environ if environ is None else environ).items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        keys = name[len(ENV_PREFIX):].lower().split("__")
        if keys[0] not in Settings.model_fields or not all(keys):
            continue
        parsed: Any = value
        if value[:1] in "[{":
            with contextlib.suppress(ValueError):
                parsed = json.loads(value)
        table = out
        for key in keys[:-1]:
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{name}: {'.'.join(keys)} mixes a value and a table")
        table[keys[-1]] = parsed
    return out


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top, table by table (the environment wins)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


class Profile(BaseModel):
    """Validated settings plus the plugin models of source and target."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    settings: Settings
    source: PluginSettings
    target: PluginSettings
    path: Path | None = None
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.settings.profile

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with every secret replaced by ``********``."""
        out = self.settings.model_dump(mode="json", exclude={"source", "target"})
        out["source"] = _redact(self.source)
        out["target"] = _redact(self.target)
        return out


def _redact(model: BaseModel) -> dict[str, Any]:
    data = model.model_dump(mode="json")
    for name, value in list(data.items()):
        if isinstance(getattr(model, name, None), SecretStr):
            data[name] = "********" if value else None
    return data


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """The configuration file: ``--config``, ``$DIRCONNECTOR_CONFIG``, or ./dirconnector.toml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_PREFIX + "CONFIG")
    return Path(env) if env else Path(DEFAULT_FILE)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist",
                          hint="pass --config FILE or copy config.example.toml") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from exc


def load(path: str | os.PathLike[str] | None = None,
         data: dict[str, Any] | None = None) -> Profile:
    """Read, merge with the environment, and validate a profile. Raises ConfigError."""
    file = config_path(path) if data is None else None
    raw = read_toml(file) if file is not None else dict(data or {})
    env_names = {k for k in os.environ if k.upper().startswith(ENV_PREFIX)}
    raw = _merged(raw, environment())
    try:
        settings = Settings(**raw)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, Settings, env_names)) from exc
    source = _plugin(settings.source, "source")
    target = _plugin(settings.target, "target")
    warnings: list[str] = []
    if file is not None:
        inline = [f"{sec}.{name}" for sec, table in (("source", raw.get("source", {})),
                                                      ("target", raw.get("target", {})))
                  for name in _secret_names(source if sec == "source" else target)
                  if isinstance(table, dict) and table.get(name)]
        inline += _inline_service_secrets(raw)
        mode = file.stat().st_mode
        if inline and mode & (stat.S_IRGRP | stat.S_IROTH):
            warnings.append(f"{file} holds secrets inline ({', '.join(inline)}) and is readable by "
                            f"other users; chmod 600 it or use *_env / *_file")
    return Profile(settings=settings, source=source, target=target, path=file,
                   warnings=tuple(warnings))


_SERVICE_SECRETS = {"webhook": ("url", "secret"), "slack": ("url",), "teams": ("url",),
                    "email": ("password",)}
"""The secret fields of [[notify.<kind>]] channels (notify_settings); [daemon] and [state]
have theirs too."""


def _inline_service_secrets(raw: Mapping[str, Any]) -> list[str]:
    """Secrets written inline in [notify] channels and [daemon], by their TOML path."""
    found: list[str] = []
    notify = raw.get("notify")
    if isinstance(notify, dict):
        for kind, names in _SERVICE_SECRETS.items():
            channels = notify.get(kind)
            for i, channel in enumerate(channels if isinstance(channels, list) else ()):
                if isinstance(channel, dict):
                    found += [f"notify.{kind}[{i}].{n}" for n in names if channel.get(n)]
    daemon = raw.get("daemon")
    if isinstance(daemon, dict) and daemon.get("status_token"):
        found.append("daemon.status_token")
    state = raw.get("state")
    if isinstance(state, dict):
        if state.get("password"):
            found.append("state.password")
        url = state.get("url")
        if isinstance(url, str) and ":" in url.partition("://")[2].rpartition("@")[0]:
            found.append("state.url")  # a password inside the URL
    return found


def _secret_names(model: PluginSettings) -> tuple[str, ...]:
    return type(model).secret_fields()


def _plugin(table: dict[str, Any], section: Literal["source", "target"]) -> PluginSettings:
    from .registry import CONNECTORS, TARGETS, find

    kind = table.get("type")
    if not kind:
        raise ConfigError(f"{section}.type: missing",
                          hint=f"set type in [{section}]; `dirconnector connectors` lists them")
    cls = find(CONNECTORS if section == "source" else TARGETS, str(kind)).load()
    model: type[PluginSettings] = cls.settings_model
    try:
        return model.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, model, set(), prefix=section)) from exc


def format_errors(exc: ValidationError, model: type[BaseModel], env_names: set[str],
                  prefix: str = "") -> str:
    """One line per problem, each starting with the TOML path, with did-you-mean hints."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        path = ".".join(([prefix] if prefix else []) + loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            near = difflib.get_close_matches(loc[-1], _known_keys(model, loc[:-1]), n=1)
            msg = "unknown key" + (f"; did you mean {near[0]!r}?" if near else "")
        elif err["type"] == "missing":
            msg = "required but not set"
        elif "input" in err and not isinstance(err["input"], dict | list) and not _secret(loc):
            msg += f" (got {err['input']!r})"
        if not path:
            lines.append(msg)
        elif msg.split(":", 1)[0].strip() in _all_keys(model) and ":" in msg:
            lines.append(f"{path}.{msg}")
        else:
            lines.append(f"{path}: {msg}")
    return "; ".join(lines)


def _secret(loc: list[str]) -> bool:
    return any(w in loc[-1] for w in ("password", "secret", "token", "key")) if loc else False


def _known_keys(model: type[BaseModel], parents: list[str]) -> list[str]:
    for part in parents:
        field = model.model_fields.get(part)
        ann = field.annotation if field is not None else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return []
    return _all_keys(model)


def _all_keys(model: type[BaseModel]) -> list[str]:
    keys = list(model.model_fields)
    if issubclass(model, PluginSettings):
        for name in model.secret_fields():
            keys += [f"{name}_env", f"{name}_file"]
    return keys


def secret_values(profile: Profile) -> set[str]:
    """The plain values of every secret in a profile, nested tables included."""
    found: set[str] = set()

    def walk(model: BaseModel) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            for item in value if isinstance(value, tuple | list) else (value,):
                if isinstance(item, SecretStr) and item.get_secret_value():
                    found.add(item.get_secret_value())
                elif isinstance(item, BaseModel):
                    walk(item)

    walk(profile.source)
    walk(profile.target)
    walk(profile.settings)  # [state], [notify] and [daemon]
    return found
