"""The state-store behaviour tests run against both stores: SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from dirconnector.errors import StateError
from dirconnector.settings import StateSettings
from tests.pg import State


@pytest.fixture(params=["sqlite", "postgres"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[State]:
    if request.param == "sqlite":
        st = State("sqlite", StateSettings(path=tmp_path / "state.db"))
    else:
        cluster = request.getfixturevalue("postgres")
        db = cluster.new_database()
        st = State("postgres", StateSettings.model_validate(cluster.state(db)), cluster, db)
    yield st
    for store in st.opened:
        with contextlib.suppress(StateError):
            store.close()
