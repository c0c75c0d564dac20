"""`dirconnector watch` from the Graph emulator (HTTPS, msal) to scim2-server."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dirconnector import settings
from tests.emulators.graph import GraphEmulator
from tests.integration.azure.conftest import CLIENT_ID, SECRET, Tenant
from tests.integration.feedwatch import p95, until
from tests.integration.scim.conftest import TOKEN, ScimServer
from tests.integration.watch.conftest import Running

pytestmark = pytest.mark.integration

POLL = 1.0


def scim_user(scim: ScimServer, email: str) -> dict[str, Any] | None:
    found = scim.get("/Users", filter=f'userName eq "{email}"').get("Resources") or []
    assert isinstance(found, list)
    return found[0] if found else None


def watch_profile(
    emulator: GraphEmulator, scim: ScimServer, tmp_path: Path, **target: Any
) -> settings.Profile:
    """Entra ID (the emulator) to scim2-server, polled every POLL seconds."""
    return settings.load(
        data={
            "source": {
                "type": "azure",
                "tenant_id": emulator.tenant_id,
                "client_id": CLIENT_ID,
                "client_secret": SECRET,
                "authority_host": emulator.origin,
                "graph_url": emulator.origin,
                "ca_file": str(emulator.ca_file),
                "poll_interval": f"{POLL:g}s",
            },
            "target": {"type": "scim", "url": scim.url, "token": TOKEN, **target},
            "sync": {"remove_missing": True, "batch_window": "0.2s"},
            "state": {"path": str(tmp_path / "state.db")},
        }
    )


def test_disabled_user_reaches_scim_within_poll_interval(
    emulator: GraphEmulator,
    tenant: Tenant,
    scim_server: ScimServer,
    tmp_path: Path,
    record_property: Callable[[str, Any], None],
) -> None:
    """A user disabled in Entra ID is inactive on scim2-server within poll_interval + 1 s
    (p95 over 10 disables), and a quiet poll costs two Graph requests."""
    d = emulator.directory
    people = [d.add_user(f"w{i}@contoso.com", f"Watch {i}") for i in range(10)]
    profile = watch_profile(emulator, scim_server, tmp_path)
    lags = []
    with Running(profile) as run:
        until(lambda: run.watcher.full_syncs >= 1 and bool(run.watcher.position), 30)
        emulator.reset_log()
        time.sleep(3 * POLL)
        quiet = [s.path for s in emulator.graph_calls()]
        for i, uid in enumerate(people):
            email = f"w{i}@contoso.com"
            assert (scim_user(scim_server, email) or {}).get("active") is True
            d.disable_user(uid)
            t0 = time.monotonic()
            until(lambda e=email: (scim_user(scim_server, e) or {}).get("active") is False, 10)
            lags.append(time.monotonic() - t0)
    assert run.error is None, run.error
    polls = len(quiet) / 2
    assert 2 <= polls <= 4 and set(quiet) == {"users/delta", "groups/delta"}, quiet
    record_property("lags", lags)
    print(
        f"\nEntra watch: lag p95 {p95(lags):.2f} s, max {max(lags):.2f} s, "
        f"mean {sum(lags) / len(lags):.2f} s over {len(lags)} disables (poll {POLL:g} s); "
        f"{len(quiet)} requests in {polls:g} quiet polls"
    )
    assert p95(lags) <= POLL + 1.0


def test_check_names_the_delta_stream(
    emulator: GraphEmulator, tenant: Tenant, scim_server: ScimServer, tmp_path: Path
) -> None:
    """`dirconnector check` says watch follows Entra ID by delta, and how often it polls."""
    import json

    from click.testing import CliRunner

    from dirconnector import cli

    config = tmp_path / "config.toml"
    source = {
        "type": "azure",
        "tenant_id": emulator.tenant_id,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "authority_host": emulator.origin,
        "graph_url": emulator.origin,
        "ca_file": str(emulator.ca_file),
        "poll_interval": "30s",
    }
    config.write_text(
        "[source]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in source.items())
        + f'[target]\ntype = "scim"\nurl = "{scim_server.url}"\ntoken = "{TOKEN}"\n'
        f'[state]\npath = "{tmp_path / "state.db"}"\n'
    )
    result = CliRunner().invoke(
        cli.main, ["--config", str(config), "check"], catch_exceptions=False
    )
    out = " ".join(result.output.split())
    assert "watch mode: follows changes by delta" in out, out
    assert "polled every 30 s" in out


def test_a_manager_change_reaches_scim_and_a_cleared_manager_is_removed(
    emulator: GraphEmulator, tenant: Tenant, scim_server: ScimServer, tmp_path: Path
) -> None:
    """With the manager mapped, the users deltaLink selects ``manager``: a new manager in
    Entra ID (``manager@delta``) becomes the report's enterprise manager on scim2-server,
    a removed one is cleared there, both without a rebuild, and a full plan after is empty."""
    from dirconnector.mapping import ENTERPRISE
    from dirconnector.state import open_store
    from dirconnector.sync import Runner

    def manager_of(email: str) -> str:
        found = scim_user(scim_server, email) or {}
        return str(((found.get(ENTERPRISE) or {}).get("manager") or {}).get("value") or "")

    def scim_id(email: str) -> str:
        return str((scim_user(scim_server, email) or {}).get("id") or "")

    d = emulator.directory
    d.set_manager(tenant.bob, tenant.alice)
    profile = watch_profile(
        emulator, scim_server, tmp_path, mapping={f"{ENTERPRISE}:manager": "manager"}
    )
    bob = "bob@contoso.com"
    with Running(profile) as run:
        until(lambda: run.watcher.full_syncs >= 1 and bool(run.watcher.position), 30)
        assert manager_of(bob) == scim_id("alice@contoso.com") != ""
        emulator.reset_log()
        d.set_manager(tenant.bob, tenant.dave)
        until(lambda: manager_of(bob) == scim_id("dave@contoso.com"), 10)
        d.set_manager(tenant.bob, None)
        until(lambda: manager_of(bob) == "", 10)
        stream = run.watcher.connector._azure_stream()  # type: ignore[attr-defined]
        paths = {s.path for s in emulator.graph_calls()}
    assert run.error is None, run.error
    assert stream.rebuilds == 0
    assert paths == {"users/delta", "groups/delta"}  # no list of every user's manager
    store = open_store(profile.settings.state)
    try:
        result = Runner(profile, store).run("plan", full=True)
        assert result.plan is not None and result.plan.changes == (), result.plan
    finally:
        store.close()
