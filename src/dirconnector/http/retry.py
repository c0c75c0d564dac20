"""Back-off: how long to wait between tries, within which bounds, and the one sleep.

Every retry loop in dirconnector waits through a ``Backoff`` (HttpClient's, the Google
client's, the SCIM create that looks before it POSTs again, the read-backs after an
ambiguous failure), so one RetryPolicy bounds them and one switch stops them all:
``set_testing(True)`` (stamina's testing switch) makes ``pause``, the sleep every wait
ends in, return at once. The wait is still computed, bounded and handed to a ``sleep``
a test injects, so tests can assert on it without sleeping through it.

A wait is the server's hint when it gives one (``Retry-After`` in seconds, fractional
too: Graph sends "2.128", or as an HTTP date, RFC 9110 10.2.3; Okta's reset header),
else exponential back-off with jitter; never more than ``max_delay`` at once nor more
than ``max_total_wait`` for one operation.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Answers worth another try of any request: throttled, or a gateway that failed."""

_testing = False
"""Testing mode: back-off waits return at once (``set_testing``)."""


def set_testing(testing: bool) -> None:
    """Turn testing mode on or off: on, ``pause`` (every back-off wait) returns at once."""
    global _testing
    _testing = testing


def is_testing() -> bool:
    """Whether testing mode is on."""
    return _testing


def pause(seconds: float) -> None:
    """Wait out a back-off of ``seconds``; nothing in testing mode."""
    if not _testing:
        time.sleep(seconds)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try before giving up."""

    attempts: int = 6
    """Tries in all, the first included."""
    base_delay: float = 0.5
    """First backoff in seconds; doubles each try."""
    max_delay: float = 60.0
    """Cap on one wait."""
    max_total_wait: float = 300.0
    """Cap on the waiting of one request, all tries together."""


DEFAULT_POLICY = RetryPolicy()
"""Six tries, waits from half a second doubling to a minute, five minutes in all."""

READ_BACK = RetryPolicy(attempts=3, base_delay=0.4, max_delay=1.0, max_total_wait=5.0)
"""Reading a resource back after an ambiguous failure, to learn whether a change landed:
three tries a fraction of a second apart (it may meet the same flaky gateway)."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _jittered(attempt: int, policy: RetryPolicy, rng: random.Random | None) -> float:
    """Exponential back-off with jitter for the given 1-based attempt: a wait between half
    and all of ``base_delay * 2**(attempt-1)``, capped at ``max_delay``."""
    ceiling = min(policy.max_delay, policy.base_delay * (2 ** (attempt - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)


class Backoff:
    """The waiting between the tries of one operation, within a RetryPolicy's bounds.

    The loop stays the caller's (what is worth another try is its business); the
    arithmetic and the sleep are this::

        waits = Backoff(policy, sleep=self._sleep)
        for attempt in itertools.count(1):
            try:
                return call()
            except Retryable as exc:
                if not waits.again(attempt, parse_retry_after(exc.retry_after)):
                    raise

    ``gives_up``, ``delay``, ``fits`` and ``wait`` are ``again`` in steps, for a loop
    that words each give-up differently or logs the wait (HttpClient.request).
    """

    __slots__ = ("_rng", "_sleep", "policy", "waited")

    def __init__(self, policy: RetryPolicy, *, sleep: Callable[[float], None] = pause,
                 rng: random.Random | None = None) -> None:
        self.policy = policy
        self.waited = 0.0
        """Seconds waited so far, all tries together."""
        self._sleep = sleep
        self._rng = rng

    def gives_up(self, attempt: int) -> bool:
        """Whether ``attempt`` (1-based) was the last try the policy allows."""
        return attempt >= self.policy.attempts

    def delay(self, attempt: int, hinted: float | None = None) -> float:
        """The wait after try ``attempt``: the server's ``hinted`` seconds if it said, else
        back-off with jitter; never more than ``max_delay``."""
        wait = _jittered(attempt, self.policy, self._rng) if hinted is None else hinted
        return min(wait, self.policy.max_delay)

    def fits(self, delay: float) -> bool:
        """Whether waiting ``delay`` more stays within ``max_total_wait``."""
        return self.waited + delay <= self.policy.max_total_wait

    def wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds (through the injected sleep, ``pause`` by default)."""
        self._sleep(delay)
        self.waited += delay

    def again(self, attempt: int, hinted: float | None = None) -> bool:
        """After failed try ``attempt``: wait and say True, or say False at once when the
        policy allows no more (tries or total wait used up)."""
        delay = self.delay(attempt, hinted)
        if self.gives_up(attempt) or not self.fits(delay):
            return False
        self.wait(delay)
        return True
