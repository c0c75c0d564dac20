"""``[notify]`` and ``[daemon]``: who is told what, and how the status page is guarded.

Every URL of a chat webhook is a secret (Slack and Teams put the credential in the
path), so each one is given like any other secret: ``url``, ``url_env`` or ``url_file``.
The models live apart from ``settings`` so that the CLI's start-up does not grow and
``notify`` (which imports the HTTP client) is only imported when something is sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Event = Literal["refused", "failed", "failing", "recovered", "changes"]
EVENTS: tuple[Event, ...] = ("refused", "failed", "failing", "recovered", "changes")
DEFAULT_EVENTS: tuple[Event, ...] = ("refused", "failed", "failing", "recovered")
"""Every event but "changes" (a run that changed something): opt in to that one."""


class _WithSecrets(BaseModel):
    """Resolves ``x_env`` / ``x_file`` into secret field ``x``, as [source] and [target] do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _resolve_secrets(cls, data: Any) -> Any:
        from .settings import resolve_secrets

        return resolve_secrets(cls, data) if isinstance(data, dict) else data


class _Channel(_WithSecrets):
    events: tuple[Event, ...] | None = None
    """The events this channel gets; unset: ``[notify] events``."""
    timeout: float = Field(10.0, gt=0)
    """Seconds to wait for the receiver on one attempt."""


class _HttpChannel(_Channel):
    url: SecretStr
    """The receiver's URL (``url_env`` / ``url_file``): chat webhooks carry their key in it."""
    ca_file: Path | None = None
    """PEM bundle of the CA that signed the receiver's certificate (else the system store)."""
    verify_tls: bool = True


class WebhookChannel(_HttpChannel):
    """``[[notify.webhook]]``: a JSON POST in the documented schema (README, Notifications)."""

    secret: SecretStr | None = None
    """HMAC-SHA256 key (``secret_env`` / ``secret_file``): signs each body in
    ``X-Dirconnector-Signature``; unset: unsigned."""


class ChatChannel(_HttpChannel):
    """``[[notify.slack]]`` / ``[[notify.teams]]``: an incoming webhook of a chat service."""


class EmailChannel(_Channel):
    """``[[notify.email]]``: a message to an SMTP relay, the run's HTML report attached."""

    host: str
    port: int = Field(587, gt=0, lt=65536)
    security: Literal["starttls", "tls", "none"] = "starttls"
    """"starttls" (port 587), "tls" (implicit TLS, port 465) or "none" (a local relay;
    no login allowed: the password would cross the network in clear)."""
    username: str | None = None
    password: SecretStr | None = None
    """With ``username``: ``password_env`` / ``password_file``."""
    sender: str = Field(min_length=3)
    """The From address."""
    to: tuple[str, ...] = Field(min_length=1)
    ca_file: Path | None = None
    verify_tls: bool = True
    attach_report: bool = True
    """Attach the run's HTML report (skipped above ``attach_max_mb``)."""
    attach_max_mb: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _login_needs_tls(self) -> EmailChannel:
        if self.security == "none" and (self.username or self.password):
            raise ValueError("security = \"none\" with a username or password would send the "
                             "password in clear; use \"starttls\" or \"tls\"")
        if bool(self.username) != bool(self.password):
            raise ValueError("username and password go together")
        return self


class NotifySettings(BaseModel):
    """``[notify]``: the events that are sent, and the channels they go to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: tuple[Event, ...] = DEFAULT_EVENTS
    failing_after: int = Field(3, ge=2)
    """"failing" is sent once when this many runs in a row have failed."""
    attempts: int = Field(5, ge=1, le=20)
    """Tries per message, with exponential back-off between them."""
    exit_wait: float = Field(10.0, ge=0)
    """One-shot commands (``sync``, ``apply``): seconds to wait at exit for deliveries
    still under way; what is not sent by then is logged as not sent."""
    status_url: str = ""
    """The daemon status page's address as readers reach it (``https://dc.example.com/``):
    messages then link to the run's report; unset: no link."""
    webhook: tuple[WebhookChannel, ...] = ()
    slack: tuple[ChatChannel, ...] = ()
    teams: tuple[ChatChannel, ...] = ()
    email: tuple[EmailChannel, ...] = ()

    @property
    def any(self) -> bool:
        return bool(self.webhook or self.slack or self.teams or self.email)


class DaemonSettings(_WithSecrets):
    """``[daemon]``: options of ``dirconnector daemon`` (the same in every profile file)."""

    status_token: SecretStr | None = None
    """Bearer token the status page (``/``, ``/runs/``, ``/history``) asks for
    (``status_token_env`` / ``status_token_file``); /healthz and /metrics stay open for
    probes and scrapers."""
