"""The complete-read gate, end to end, for any connector: a good sync, then a broken read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dirconnector.errors import DirconnectorError

from .rig import NO_LIMITS, Rig, first_directory, runner


def assert_broken_read_changes_nothing(rig: Rig, make: Callable[[], Any],
                                       break_read: Callable[[], None]) -> str:
    """Sync ``make()``'s directory, break the source, sync again: the run fails, exit 1,
    with one line, and the server, the journal and the managed set stay as they were.
    Returns the error line."""
    rig.write(first_directory(3), **NO_LIMITS)
    first = runner(rig, make()).run("sync")
    assert first.status == "ok", first.error
    assert first.desired is not None and len(first.desired.users) > 2
    before = rig.view()
    break_read()
    try:
        result = runner(rig, make()).run("sync", full=True)
    except DirconnectorError as exc:
        error = str(exc)
        assert exc.exit_code == 1 and "\n" not in error, error
    else:
        # A connector may report the read as incomplete instead of raising: then the
        # guard must refuse every removal (exit 3).
        assert result.status == "refused" and result.exit_code == 3, (result.status,
                                                                      result.refused)
        error = "; ".join(result.refused)
    assert rig.view() == before
    run_id, status, _ = rig.run_rows()[-1]
    assert status in ("failed", "refused")
    assert rig.journal(run_id) == []
    return error
