"""The error tree. Every failure the CLI reports is one of these.

    DirconnectorError              exit 1 unless said otherwise
    ├── ConfigError                bad or missing settings; names the TOML path
    ├── SourceError                the directory could not be read completely
    │   └── IncompleteRead         a read stopped early (limit, failed page); never plan removals
    ├── TargetError                the server refused or failed
    │   ├── AuthError              credentials rejected (401/403, bad bind)
    │   └── Conflict               the server already holds the object (409)
    ├── TransientError             worth retrying: 429, 502/503/504, resets, timeouts
    ├── SafetyLimit                the guard refused the plan                 exit 3
    ├── StalePlan                  a saved plan no longer matches the server
    ├── StateError                 the state database cannot be used
    │   └── LockLost               the run's lock session died: it stopped writing
    ├── LockHeld                   another run of the profile is in progress
    │   └── TickTaken              another replica already ran the profile this tick
    ├── RunInterrupted             a signal stopped the run between two changes
    └── ProfileFrozen              the profile was handed to an IdP by `migrate`

Foreign exceptions are translated once, at the edge, with ``raise ... from exc``.
"""

from __future__ import annotations


class DirconnectorError(Exception):
    """Base of every error this tool raises on purpose."""

    exit_code = 1
    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint


class ConfigError(DirconnectorError):
    """Settings are invalid; the message names the TOML path of the field."""


class SourceError(DirconnectorError):
    """The directory could not be read."""


class IncompleteRead(SourceError):
    """A read ended before it saw every entry; no removal may be planned from it."""


class TargetError(DirconnectorError):
    """The server answered with an error."""

    def __init__(self, message: str, *, status: int | None = None, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.status = status


class AuthError(TargetError):
    """Credentials were rejected."""


class Conflict(TargetError):
    """The object already exists on the server (HTTP 409)."""


class TransientError(DirconnectorError):
    """A failure worth retrying after a pause."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SafetyLimit(DirconnectorError):
    """The guard refused a plan."""

    exit_code = 3


class StalePlan(DirconnectorError):
    """A saved plan was computed against a server state that no longer holds."""


class StateError(DirconnectorError):
    """The state database cannot be opened or written."""


class LockLost(StateError):
    """The session that held the profile's lock is gone (PostgreSQL restarted, the network
    cut): another replica may hold the profile now, so this run wrote nothing more."""


class LockHeld(DirconnectorError):
    """Another run of this profile holds the lock."""


class TickTaken(LockHeld):
    """Another daemon replica already ran the profile in this tick of its schedule."""


class RunInterrupted(DirconnectorError):
    """A signal asked the run to stop; the journal holds every change that finished."""


class ProfileFrozen(DirconnectorError):
    """The profile was migrated to IdP-driven SCIM and must not sync."""
