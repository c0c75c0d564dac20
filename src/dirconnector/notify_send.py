"""Delivering notifications: in the background, retried, never in a sync's way.

Each channel (``[[notify.webhook]]``, ``slack``, ``teams``, ``email``, in each profile)
has its own queue and thread, so a receiver that is down or slow delays nothing but
its own messages. A message is tried ``[notify] attempts`` times with exponential
back-off (``http.Backoff``: the project's testing switch makes the waits instant); a
4xx answer, a refused login or recipient is not retried. What cannot be sent is logged
(with the channel's name, never its URL) and counted: ``on_result(channel kind, event,
"sent" | "failed" | "dropped")`` feeds the daemon's metrics. A full queue drops the
message rather than block.

Webhooks go through the project's HTTP client (``http.HttpClient.request`` and the
errors it raises); the generic webhook is signed when it has a ``secret``::

    X-Dirconnector-Timestamp: <unix seconds>
    X-Dirconnector-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

A receiver recomputes the HMAC over the raw body and rejects a timestamp older than a
few minutes (a replay).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import queue
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import http, logs
from .errors import DirconnectorError, TargetError
from .notify import Notice, email, generic_body, slack_body, teams_body
from .notify_settings import (
    ChatChannel,
    EmailChannel,
    NotifySettings,
    WebhookChannel,
)

log = logging.getLogger(__name__)

OnResult = Callable[[str, str, str], None]
BACKOFF = {"base_delay": 2.0, "max_delay": 120.0, "max_total_wait": 900.0}
"""Waits between the tries of one message: 2 s doubling to 2 min, 15 min in all."""
QUEUE_SIZE = 100


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Dirconnector-Signature`` value of a body sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True, slots=True)
class Channel:
    """One configured receiver."""

    kind: str
    """"webhook", "slack", "teams" or "email"."""
    name: str
    """How logs name it: the kind, the profile, the index, the host; never the URL."""
    config: WebhookChannel | ChatChannel | EmailChannel


def channels(profile: str, settings: NotifySettings) -> list[Channel]:
    out: list[Channel] = []
    for kind in ("webhook", "slack", "teams", "email"):
        for i, cfg in enumerate(getattr(settings, kind)):
            where = cfg.host if isinstance(cfg, EmailChannel) else \
                urlsplit(cfg.url.get_secret_value()).hostname or "?"
            out.append(Channel(kind, f"{kind}[{i}] of {profile} ({where})", cfg))
    return out


class Permanent(Exception):
    """A delivery error that another try will not fix."""


class Notifier:
    """Queues notices and delivers them from background threads."""

    def __init__(self, on_result: OnResult | None = None) -> None:
        self.on_result = on_result or (lambda _kind, _event, _result: None)
        self._queues: dict[str, queue.Queue[tuple[Notice, Channel, int]]] = {}
        self._lock = threading.Condition()
        self._pending = 0

    def submit(self, notices: Iterable[Notice], settings: NotifySettings) -> int:
        """Queue each notice for every channel that wants its event; returns at once."""
        queued = 0
        for notice in notices:
            for channel in channels(notice.profile, settings):
                if notice.event not in (channel.config.events or settings.events):
                    continue
                q = self._queue(channel.name)
                with self._lock:
                    self._pending += 1
                try:
                    q.put_nowait((notice, channel, settings.attempts))
                    queued += 1
                except queue.Full:
                    self._done()
                    log.error("notification %s to %s dropped: %d messages already wait for it",
                              notice.event, channel.name, QUEUE_SIZE)
                    self.on_result(channel.kind, notice.event, "dropped")
        return queued

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued message; True when none is left."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def _done(self) -> None:
        with self._lock:
            self._pending -= 1
            self._lock.notify_all()

    def _queue(self, key: str) -> queue.Queue[tuple[Notice, Channel, int]]:
        with self._lock:
            if key not in self._queues:
                q: queue.Queue[tuple[Notice, Channel, int]] = queue.Queue(QUEUE_SIZE)
                self._queues[key] = q
                threading.Thread(target=self._work, args=(q,), name=f"notify {key}",
                                 daemon=True).start()
            return self._queues[key]

    def _work(self, q: queue.Queue[tuple[Notice, Channel, int]]) -> None:
        while True:
            notice, channel, attempts = q.get()
            try:
                self._deliver(notice, channel, attempts)
            except Exception:  # a sender must outlive any one message
                log.exception("notification %s to %s: unexpected error", notice.event,
                              channel.name)
                self.on_result(channel.kind, notice.event, "failed")
            finally:
                self._done()

    def _deliver(self, notice: Notice, channel: Channel, attempts: int) -> None:
        waits = http.Backoff(http.RetryPolicy(attempts=attempts, **BACKOFF))
        for attempt in range(1, attempts + 1):
            try:
                send(notice, channel)
            except (Permanent, DirconnectorError, smtplib.SMTPException, OSError) as exc:
                reason = scrub(str(exc), channel)
                retry = not isinstance(exc, Permanent) and _transient(exc)
                wait = waits.delay(attempt)
                if retry and not waits.gives_up(attempt) and waits.fits(wait):
                    log.warning("notification %s to %s failed (%s); retry %d in %.1fs",
                                notice.event, channel.name, reason, attempt, wait)
                    waits.wait(wait)
                    continue
                log.error("notification %s of profile %s (run %s) NOT sent to %s after %d "
                          "attempt(s): %s", notice.event, notice.profile, notice.run_id or "-",
                          channel.name, attempt, reason)
                self.on_result(channel.kind, notice.event, "failed")
                return
            log.info("notified %s of %s (profile %s, run %s)", channel.name, notice.event,
                     notice.profile, notice.run_id or "-")
            self.on_result(channel.kind, notice.event, "sent")
            return


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, TargetError):  # the HTTP client's answer errors carry the status
        return exc.status is None or exc.status == 429 or exc.status >= 500
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code < 500
    return not isinstance(exc, smtplib.SMTPRecipientsRefused | smtplib.SMTPNotSupportedError)


def scrub(text: str, channel: Channel) -> str:
    """An error's text without the channel's URL (chat webhooks carry their key in it)."""
    cfg = channel.config
    if not isinstance(cfg, EmailChannel):
        url = cfg.url.get_secret_value()
        parts = urlsplit(url)
        for secret in (url, f"{parts.netloc}{parts.path}", parts.path if len(parts.path) > 1
                       else "", parts.query):
            if secret:
                text = text.replace(secret, "<url>")
    return logs.redact(text)


def send(notice: Notice, channel: Channel) -> None:
    """One attempt to deliver ``notice`` on ``channel``; raises what went wrong."""
    cfg = channel.config
    if isinstance(cfg, EmailChannel):
        _send_mail(notice, cfg)
        return
    headers = {"Content-Type": "application/json", "User-Agent": "dirconnector-notify/1"}
    if channel.kind == "webhook":
        body = generic_body(notice)
        stamp = str(int(time.time()))
        headers.update({"X-Dirconnector-Event": notice.event,
                        "X-Dirconnector-Delivery": notice.id,
                        "X-Dirconnector-Timestamp": stamp})
        if isinstance(cfg, WebhookChannel) and cfg.secret is not None:
            headers["X-Dirconnector-Signature"] = sign(cfg.secret.get_secret_value(), stamp, body)
    else:
        body = slack_body(notice) if channel.kind == "slack" else teams_body(notice)
    url = cfg.url.get_secret_value()
    client = http.HttpClient(url, side="target", label=f"notify {channel.kind}",
                             verify=http.tls_verify(cfg.verify_tls, str(cfg.ca_file)
                                                    if cfg.ca_file else None),
                             timeout=cfg.timeout, retry=http.RetryPolicy(attempts=1),
                             pool_size=1)
    client.request("POST", url, data=body, headers=headers, ok=range(200, 300),
                   retry_connection_errors=False)


def _send_mail(notice: Notice, cfg: EmailChannel) -> None:
    report: str | None = None
    note = ""
    if cfg.attach_report and notice.report is not None:
        html = notice.report()
        if len(html) > cfg.attach_max_mb * 1e6:
            note = (f"The run's report ({len(html) / 1e6:.1f} MB) is larger than "
                    f"attach_max_mb and is not attached.")
        else:
            report = html
    msg = email(notice, cfg.sender, cfg.to, report, note)
    context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    if not cfg.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    smtp: smtplib.SMTP
    if cfg.security == "tls":
        smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
    else:
        smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
    with contextlib.closing(smtp):
        if cfg.security == "starttls":
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise Permanent(f"{cfg.host}:{cfg.port} does not offer STARTTLS "
                                f"(set security = \"tls\" for implicit TLS)")
            smtp.starttls(context=context)
            smtp.ehlo()
        if cfg.username and cfg.password is not None:
            try:
                smtp.login(cfg.username, cfg.password.get_secret_value())
            except smtplib.SMTPAuthenticationError as exc:
                raise Permanent(f"{cfg.host}: login of {cfg.username} refused "
                                f"({exc.smtp_code})") from exc
        smtp.send_message(msg)
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()

