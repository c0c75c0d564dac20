"""Logging set-up: text on a terminal, JSON lines for machines, secrets always redacted."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import Any

_SECRETS: set[str] = set()
# Terminal control characters (a name from the directory must not drive the terminal).
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
run_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("run_id", default="")
profile_var: contextvars.ContextVar[str] = contextvars.ContextVar("profile", default="")


def add_secrets(values: set[str]) -> None:
    """Register secret values that must never appear in any log line or message."""
    _SECRETS.update(v for v in values if len(v) >= 4)


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "********")
    return text


class RedactingFilter(logging.Filter):
    """Replaces registered secrets in the formatted message and in exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            record.msg = redact(record.getMessage())
            record.args = None
            if record.exc_info:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        record.run_id = run_id_var.get()
        record.profile = profile_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("run_id", "profile"):
            value = getattr(record, key, "")
            if value:
                data[key] = value
        if record.exc_text:
            data["exc"] = record.exc_text
        elif record.exc_info:
            data["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        run = getattr(record, "run_id", "")
        prefix = f"[{run}] " if run else ""
        message = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", record.getMessage())
        line = f"{record.levelname.lower()}: {prefix}{message}"
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


def setup(verbose: int = 0, quiet: bool = False, fmt: str = "auto", daemon: bool = False) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[
        min(verbose, 2)]
    if daemon and not quiet and verbose == 0:
        level = logging.INFO
    use_json = fmt == "json" or (fmt == "auto" and daemon and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_dirconnector", False):
            root.removeHandler(old)
    handler._dirconnector = True  # type: ignore[attr-defined]  # marks our own handler
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "msal", "googleapiclient", "ldap3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
