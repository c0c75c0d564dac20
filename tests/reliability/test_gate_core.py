"""Complete-read gate in the pipeline: incomplete, empty and shrunken reads plan no removal."""

from __future__ import annotations

import pytest

from dirconnector.model import User
from dirconnector.testing import FakeConnector

from .conftest import MakeRig
from .rig import Rig, first_directory, runner

pytestmark = pytest.mark.integration

PEOPLE = [User(f"p{i:02d}", f"p{i:02d}@example.org") for i in range(20)]
OPEN = {"remove_missing": True, "max_revocations": 10_000, "max_revocation_ratio": 1.0}


def synced(make_rig_for: MakeRig, **sync: object) -> Rig:
    rig = make_rig_for("scim")
    rig.write(first_directory(3), **{**OPEN, **sync})
    assert runner(rig, FakeConnector(users=PEOPLE)).run("sync").status == "ok"
    return rig


@pytest.mark.parametrize(("read", "why"), [
    (FakeConnector(users=PEOPLE[:15], complete=False), "incomplete read"),
    (FakeConnector(users=[]), "returned no users at all"),
    (FakeConnector(users=PEOPLE[:17]), "min_source_ratio"),
])
def test_untrustworthy_read_is_refused(make_rig_for: MakeRig, read: FakeConnector,
                                       why: str) -> None:
    """Incomplete, empty, or below 90% of the last good read: refused (exit 3), no change."""
    rig = synced(make_rig_for)
    before = rig.view()
    result = runner(rig, read).run("sync")
    assert result.status == "refused" and result.exit_code == 3
    assert any(why in r for r in result.refused), result.refused
    assert rig.view() == before
    assert rig.journal(rig.run_rows()[-1][0]) == []


def test_incomplete_read_still_creates_without_removing(make_rig_for: MakeRig) -> None:
    """An incomplete read that only adds people is not refused: additions are safe."""
    rig = synced(make_rig_for)
    more = [*PEOPLE, User("p99", "p99@example.org")]
    result = runner(rig, FakeConnector(users=more, complete=False)).run("sync")
    assert result.status == "ok" and result.refused == []
    assert rig.view().user("p99") is not None


def test_ratio_floor_allows_a_small_drop(make_rig_for: MakeRig) -> None:
    """Two leavers of twenty (90% remain) pass min_source_ratio = 0.9 and are revoked."""
    rig = synced(make_rig_for)
    result = runner(rig, FakeConnector(users=PEOPLE[:18])).run("sync")
    assert result.status == "ok"
    assert sorted(u.external_id for u in rig.view().users if not u.active) == ["p18", "p19"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_unreadable_directory_file_changes_nothing(make_rig_for: MakeRig, damage: str) -> None:
    """The file source cut short, garbled or gone: exit 1, one line, no revocation."""
    rig = make_rig_for("scim")
    rig.write(first_directory(6), **OPEN)
    assert rig.cli("sync").exit_code == 0
    before = rig.view()
    text = rig.directory_file.read_text()
    if damage == "truncate":
        rig.directory_file.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        rig.directory_file.write_text("<html>502 Bad Gateway</html>")
    else:
        rig.directory_file.unlink()
    run = rig.cli("sync")
    assert run.exit_code == 1 and not run.crash, run.output[-800:]
    assert len([x for x in run.output.splitlines() if x.startswith("Error:")]) == 1
    assert rig.view() == before
