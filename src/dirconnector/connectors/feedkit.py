"""What the polled change feeds (Okta, OneLogin, Google Workspace) share.

- ``FeedPosition``: the server time a poll began, plus the stamps it handed on within the
  overlap (so the next poll, which asks again from an overlap earlier, hands nothing on
  twice), plus whatever small state a feed needs (OneLogin's role names). Serialised
  into the opaque string ``HasChangeStream`` positions are.
- ``check_position``: the gaps every feed shares: a position older than the vendor's
  retention, or ahead of the server's clock.
- ``ShareBudget``: keeps a feed, which polls forever, under a share of the vendor's rate
  limit, so the admin's other integrations keep theirs.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from . import StreamGap

log = logging.getLogger(__name__)

CLOCK_TOLERANCE = timedelta(minutes=2)
"""How far ahead of the server's clock a position may be before it is distrusted."""


def parse_time(text: str) -> datetime:
    """An ISO 8601 timestamp (``Z`` or an offset; naive means UTC)."""
    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def iso_ms(when: datetime) -> str:
    """``2026-01-21T09:20:15.990Z``: the form Okta, OneLogin and Google all write."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def epoch(stamp: str) -> float | None:
    try:
        return parse_time(stamp).timestamp()
    except ValueError:
        return None


@dataclass
class FeedPosition:
    """Where a feed stands; ``dump``/``load`` make it the stream's opaque string."""

    at: str
    """ISO timestamp (server clock) at which the poll that produced this position began."""
    seen: dict[str, str] = field(default_factory=dict)
    """Key (``u:<id>``, ``g:<id>``, ``e:<event id>``) -> the stamp handed on, within the overlap."""
    extra: dict[str, Any] = field(default_factory=dict)
    """A feed's own small state (OneLogin: role id -> name, to see renames and deletions)."""

    def dump(self, prefix: str) -> str:
        body = {"at": self.at, "seen": self.seen}
        if self.extra:
            body["extra"] = self.extra
        return prefix + json.dumps(body, separators=(",", ":"), sort_keys=True)

    @classmethod
    def load(cls, text: str, prefix: str) -> FeedPosition:
        if not text.startswith(prefix):
            raise StreamGap(f"{prefix.split(':')[0]}: {text[:40]!r} is not a position of "
                            "this feed")
        try:
            data = json.loads(text[len(prefix):])
            parse_time(str(data["at"]))
            return cls(str(data["at"]), {str(k): str(v) for k, v in dict(data["seen"]).items()},
                       dict(data.get("extra") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise StreamGap(f"{prefix.split(':')[0]}: unreadable feed position ({exc})") from exc

    def fresh(self, key: str, stamp: str, old: FeedPosition) -> bool:
        """Record ``key`` at ``stamp``; True unless ``old`` already handed it on at that stamp."""
        self.seen[key] = stamp
        return old.seen.get(key) != stamp

    def settle(self, started: datetime, overlap: timedelta) -> None:
        """Move to ``started``; forget stamps the next poll (from started - overlap) cannot see."""
        self.at = iso_ms(started)
        keep_from = iso_ms(started - overlap)
        self.seen = {k: v for k, v in self.seen.items() if v >= keep_from}


def check_age(position: FeedPosition, now: float, retention: timedelta,
              overlap: timedelta, label: str, log_name: str) -> None:
    """StreamGap when the position (minus the overlap) is older than the log keeps."""
    at = parse_time(position.at)
    if datetime.fromtimestamp(now, UTC) - at > retention - overlap:
        raise StreamGap(f"{label}: the feed position {position.at} is older than the "
                        f"{log_name}'s {retention.days} days' retention")


def check_clock(position: FeedPosition, server_now: datetime, label: str) -> None:
    """StreamGap when the position is ahead of the server's clock (a clock went wrong)."""
    if parse_time(position.at) - server_now > CLOCK_TOLERANCE:
        raise StreamGap(f"{label}: the feed position {position.at} is ahead of the server's "
                        f"clock ({iso_ms(server_now)})")


class ShareBudget:
    """Keeps one reader under ``share`` of each rate-limit window.

    ``observe`` is told, after each answer, the window's limit and the seconds until it
    resets (from the vendor's headers); once the reader has sent ``share`` x limit
    requests in the window, ``pause`` waits for the reset.
    """

    def __init__(self, share: float, label: str, clock: Callable[[], float] = time.time,
                 max_wait: float = 3600.0) -> None:
        self.share = share
        self.label = label
        self._clock = clock
        self.max_wait = max_wait
        self.window_end = 0.0
        self.used = 0
        self.allowed: int | None = None
        self.waited = 0.0

    def observe(self, limit: float | None, reset_in: float | None) -> None:
        if limit is None or limit <= 0:
            return
        if reset_in is not None:
            end = self._clock() + reset_in
            if end > self.window_end + 1.0:      # a new window began
                self.window_end = end
                self.used = 0
        self.used += 1
        self.allowed = max(1, math.floor(limit * self.share))

    def blocked_for(self) -> float:
        """Seconds until the window resets when the share is used up, else 0."""
        if self.allowed is None or self.used < self.allowed:
            return 0.0
        return max(0.0, self.window_end - self._clock())

    def pause(self, sleep: Callable[[float], None]) -> None:
        if self.allowed is None or self.used < self.allowed:
            return
        delay = min(self.window_end - self._clock(), self.max_wait)
        if delay > 0:
            log.info("%s: the change feed used its %.0f%% share of the rate limit; "
                     "waiting %.1fs for the reset", self.label, self.share * 100, delay)
            sleep(delay)
            self.waited += delay
        self.used = 0


class Pacer:
    """When a feed may poll the vendor: at most every ``interval``, and only while its
    rate share lasts. ``changes(position, wait)`` asks ``ready(wait)``: it sleeps at most
    ``wait`` (so the caller sees its stop signal) and says whether to poll now; if not,
    the caller answers an empty batch at the same position."""

    def __init__(self, interval: float, budget: ShareBudget, sleep: Callable[[float], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.budget = budget
        self._sleep = sleep
        self._clock = clock
        self.next_poll = 0.0

    def ready(self, wait: float) -> bool:
        due = max(self.next_poll - self._clock(), self.budget.blocked_for())
        if due <= 0:
            return True
        if wait > 0:
            self._sleep(min(wait, due))
        return max(self.next_poll - self._clock(), self.budget.blocked_for()) <= 0

    def polled(self) -> None:
        self.next_poll = self._clock() + self.interval


class SharesRate(Protocol):
    """An API client whose requests can be counted against a feed's rate share."""

    share: ShareBudget | None


class Sharing:
    """While open, ``api``'s requests count against ``budget`` (the feed's share of the
    rate limit); a full read outside it is not held back."""

    def __init__(self, api: SharesRate, budget: ShareBudget) -> None:
        self.api, self.budget = api, budget

    def __enter__(self) -> None:
        self.api.share = self.budget

    def __exit__(self, *exc: object) -> None:
        self.api.share = None


def note_seen(seen_at: dict[str, float], oid: str, stamp: str) -> None:
    """Record when the vendor says ``oid`` changed (the lag metric starts there)."""
    when = epoch(stamp)
    if when is not None:
        seen_at[oid] = when
