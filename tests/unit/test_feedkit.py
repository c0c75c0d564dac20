"""feedkit: the feed position, its gaps, and the rate-limit share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dirconnector.connectors import StreamGap
from dirconnector.connectors.feedkit import (
    FeedPosition,
    Pacer,
    ShareBudget,
    check_age,
    check_clock,
    iso_ms,
)

PREFIX = "test-feed:1:"


def test_position_round_trips_with_its_stamps_and_extra() -> None:
    pos = FeedPosition("2026-01-02T03:04:05.678Z", {"u:1": "2026-01-02T03:04:05.000Z"},
                       {"groups": {"7": "Sales"}})
    again = FeedPosition.load(pos.dump(PREFIX), PREFIX)
    assert again == pos


@pytest.mark.parametrize("text", ["", "other-feed:1:{}", PREFIX + "{", PREFIX + '{"at": 1}',
                                  PREFIX + '{"at": "not a time", "seen": {}}'])
def test_a_foreign_or_broken_position_is_a_gap(text: str) -> None:
    with pytest.raises(StreamGap):
        FeedPosition.load(text, PREFIX)


def test_fresh_hands_a_stamp_on_once() -> None:
    old = FeedPosition("2026-01-01T00:00:00.000Z", {"u:1": "A"})
    new = FeedPosition(old.at)
    assert not new.fresh("u:1", "A", old)      # seen at that stamp: not again
    assert new.fresh("u:1", "B", old)          # changed since: again
    assert new.fresh("u:2", "A", old)


def test_settle_forgets_what_the_next_poll_cannot_see() -> None:
    pos = FeedPosition("x", {"old": "2026-01-01T00:00:00.000Z",
                             "recent": "2026-01-01T00:09:30.000Z"})
    pos.settle(datetime(2026, 1, 1, 0, 10, tzinfo=UTC), timedelta(minutes=1))
    assert pos.at == "2026-01-01T00:10:00.000Z" and set(pos.seen) == {"recent"}


def test_age_and_clock_gaps() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    old = FeedPosition(iso_ms(now - timedelta(days=91)))
    with pytest.raises(StreamGap, match="retention"):
        check_age(old, now.timestamp(), timedelta(days=90), timedelta(0), "t", "log")
    check_age(FeedPosition(iso_ms(now - timedelta(days=89))), now.timestamp(),
              timedelta(days=90), timedelta(0), "t", "log")
    with pytest.raises(StreamGap, match="ahead"):
        check_clock(FeedPosition(iso_ms(now + timedelta(minutes=5))), now, "t")
    check_clock(FeedPosition(iso_ms(now + timedelta(seconds=30))), now, "t")


def test_share_budget_waits_for_the_reset_once_its_share_is_used() -> None:
    now = [1000.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    budget = ShareBudget(0.2, "t", clock=lambda: now[0])
    for _ in range(20):                        # limit 50 a minute: 10 for us
        budget.pause(sleep)
        budget.observe(50, 60 - (now[0] - 1000.0) % 60)
        now[0] += 0.1
    assert len(waits) == 1 and 55 < waits[0] <= 60


def test_pacer_spaces_polls_and_defers_while_the_share_is_spent() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    budget = ShareBudget(0.5, "t", clock=lambda: now[0])
    pacer = Pacer(30.0, budget, sleep, clock=lambda: now[0])
    assert pacer.ready(1.0)
    pacer.polled()
    assert not pacer.ready(1.0) and slept == [1.0]      # 29 s left: waits 1 s, no poll
    now[0] = 30.0
    assert pacer.ready(1.0)
    budget.observe(2, 60.0)                             # 1 of a window of 2 at 50%: spent
    pacer.polled()
    now[0] = 61.0
    assert not pacer.ready(0.0)                         # interval passed, share not reset
    now[0] = 91.0
    assert pacer.ready(0.0)
