"""Rate limits: slow down before zero, wait out a 429 window, fail rather than read half."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dirconnector.connectors.okta.connector import OktaConnector
from dirconnector.errors import IncompleteRead
from dirconnector.state_space import ConnectorState

from .conftest import Org

pytestmark = pytest.mark.integration

Make = Callable[..., OktaConnector]


class Clock:
    """The org's and the connector's time: moves only when the connector sleeps."""

    def __init__(self) -> None:
        self.now = 1_750_000_000.25

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_429_window_is_waited_out_and_the_read_completes(org: Org, make: Make) -> None:
    """Meeting 429 E0000047 (budget spent by others), the read waits for the reset and finishes."""
    expected = make().fetch(ConnectorState()).digest()
    clock = org.state.clock = Clock()
    org.state.rate.limit, org.state.rate.window, org.state.rate.drain_every = 100, 1, 6
    org.state.rate.used = org.state.rate.reset_at = 0
    connector = make(page_size=4, clock=clock, sleep=clock.sleep)
    started = clock()
    snap = connector.fetch(ConnectorState())
    assert org.state.throttled >= 1
    assert snap.complete and snap.digest() == expected
    assert 1 <= clock() - started < 30     # it waited for the one-second windows, not longer


def test_slows_down_before_the_budget_reaches_zero(org: Org, make: Make) -> None:
    """With a reserve the connector pauses for the reset and is never answered 429."""
    clock = org.state.clock = Clock()
    org.state.rate.limit, org.state.rate.window = 6, 1
    org.state.rate.used = org.state.rate.reset_at = 0
    connector = make(rate_limit_reserve=0.2, page_size=4, clock=clock, sleep=clock.sleep)
    snap = connector.fetch(ConnectorState())
    assert org.state.throttled == 0
    assert connector.api.gauge.waited > 0
    assert len(snap.users) == 8


def test_read_that_cannot_finish_raises_instead_of_a_partial_snapshot(org: Org,
                                                                      make: Make) -> None:
    """When the window does not reset within the bounded waits, fetch raises IncompleteRead."""
    org.state.rate.limit, org.state.rate.window = 3, 60
    org.state.rate.used = org.state.rate.reset_at = 0
    connector = make(rate_limit_reserve=0.0, rate_limit_max_wait=0.1)
    with pytest.raises(IncompleteRead) as info:
        connector.fetch(ConnectorState())
    message = str(info.value)
    assert "did not finish" in message and "429" in message
    assert "\n" not in message
