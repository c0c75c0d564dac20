"""Watch mode against a real slapd (syncprov) and scim2-server, each test on its own slapd."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dirconnector import settings
from dirconnector.state import open_store
from dirconnector.watch import Watcher
from tests.integration.ldap.conftest import ldapdata, running_slapd
from tests.integration.scim.conftest import TOKEN, ScimServer, scim_process, scim_server

__all__ = ["ldapdata", "scim_process", "scim_server"]

USERS, GROUPS = 120, 4


@pytest.fixture
def slapd_rw(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh slapd this test may write to."""
    with running_slapd(tmp_path / "slapd", USERS, GROUPS) as env:
        yield env


def make_profile(
    tmp_path: Path, slapd: dict[str, str], scim: ScimServer, **sync: Any
) -> settings.Profile:
    data = {
        "source": {
            "type": "ldap",
            "url": slapd["SLAPD_URL"],
            "bind_dn": slapd["SLAPD_ADMIN_DN"],
            "password": slapd["SLAPD_ADMIN_PASSWORD"],
            "backend": "python-ldap",
            "disabled_filter": "(pwdAccountLockedTime=*)",
            "timeout": 10,
        },
        "target": {"type": "scim", "url": scim.url, "token": TOKEN},
        "sync": {"remove_missing": True, "batch_window": "0.2s", **sync},
        "state": {"path": str(tmp_path / "state.db")},
    }
    return settings.load(data=data)


class Running:
    """A Watcher in a thread, stopped at the end."""

    def __init__(self, profile: settings.Profile) -> None:
        self.store = open_store(profile.settings.state)
        self.stop = threading.Event()
        self.watcher = Watcher(profile, self.store, stop=self.stop)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.watcher.run()
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=20)
        self.store.close()
