"""The daemon's status page in a real browser: four profiles, one in each state.

A daemon process runs alpha (ok), beta (refused once its directory disables more people
than its limit), gamma (failing: its directory file is cut short) and delta (frozen: handed
to an IdP by `migrate`), against the session's scim2-server, with a status token.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import requests

from dirconnector.state import SqliteStore
from tests.browser import EVIL, Browser
from tests.integration.daemon.test_daemon import profile, runs, start, stop, wait_for
from tests.integration.scim.conftest import ScimServer

pytestmark = pytest.mark.integration
STATUS_TOKEN = "status-token-0123456789abcdef"
READY = "document.documentElement.dataset.ready === '1'"


def _tenant(scim: ScimServer, name: str) -> str:
    return ScimServer(scim.port, scim.process, f"s{name}{abs(hash(name)) % 10**6}").url


def _latest(tmp: Path, name: str) -> str:
    rows = runs(tmp, name)
    return rows[0].status if rows else ""


def _has(tmp: Path, name: str, status: str) -> bool:
    return any(r.status == status for r in runs(tmp, name))


def test_status_page_shows_each_profile_state_and_what_to_do(
        tmp_path: Path, scim_process: ScimServer, browser: Browser,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each profile's state, last and next run, last plan; for the refusal the exact
    commands; links to run reports (a refused run's report lists its plan)."""
    monkeypatch.setenv("STATUS_TOKEN", STATUS_TOKEN)
    token = '[daemon]\nstatus_token_env = "STATUS_TOKEN"\n'
    alpha = profile(tmp_path, "alpha", _tenant(scim_process, "alpha"), "2s", token)
    data = json.loads((tmp_path / "alpha.json").read_text())
    data["users"].append({"id": "evil-1", "user_name": "mallory",
                          "email": "mallory@example.com", "display_name": EVIL, "active": True})
    (tmp_path / "alpha.json").write_text(json.dumps(data))
    beta = profile(tmp_path, "beta", _tenant(scim_process, "beta"), "2s",
                   token + "[sync]\nmax_revocations = 2\n")
    gamma = profile(tmp_path, "gamma", _tenant(scim_process, "gamma"), "2s", token)
    (tmp_path / "gamma.json").write_text('{"users": [')  # cut short: every read fails
    delta = profile(tmp_path, "delta", _tenant(scim_process, "delta"), "2s", token)
    store = SqliteStore(tmp_path / "state.db")
    store.set_meta("delta", "frozen", {"at": "2026-11-30T09:00:00Z", "idp": "entra"})
    store.close()

    daemon = start(tmp_path, alpha, beta, gamma, delta, health=True)
    try:
        url = daemon.health_url()
        wait_for(lambda: _has(tmp_path, "alpha", "ok") and _has(tmp_path, "beta", "ok")
                 and _has(tmp_path, "gamma", "failed"))
        data = json.loads((tmp_path / "beta.json").read_text())
        for user in data["users"][:3]:
            user["active"] = False
        (tmp_path / "beta.json").write_text(json.dumps(data))
        wait_for(lambda: _latest(tmp_path, "beta") == "refused")

        assert requests.get(f"{url}/", timeout=10).status_code == 401
        denied = requests.get(f"{url}/", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert denied.status_code == 401 and "Basic" in denied.headers["WWW-Authenticate"]
        basic = base64.b64encode(f"admin:{STATUS_TOKEN}".encode()).decode()
        page = requests.get(f"{url}/", headers={"Authorization": f"Basic {basic}"}, timeout=10)
        assert page.status_code == 200 and "default-src 'none'" in \
            page.headers["Content-Security-Policy"]
        assert requests.get(f"{url}/healthz", timeout=10).status_code == 200  # probes stay open

        browser.send("Network.setExtraHTTPHeaders",
                     headers={"Authorization": f"Bearer {STATUS_TOKEN}"})
        browser.open(f"{url}/")
        text = browser.text()
        for name, state in (("alpha", "ok"), ("beta", "refused"), ("gamma", "failing"),
                            ("delta", "frozen")):
            assert browser.text(f"#profile-{name} h2").split() == [name, state]
        beta_text = browser.text("#profile-beta")
        assert "the plan would revoke or delete 3 account(s), more than max_revocations = 2" \
            in beta_text
        assert f"dirconnector --config {beta} plan --format html --out plan.html" in beta_text
        assert f"dirconnector --config {beta} sync --force" in beta_text
        assert "3 to revoke or remove" in beta_text  # the last plan's summary
        assert "gamma.json" in browser.text("#profile-gamma")
        assert "migrate rollback" in browser.text("#profile-delta")
        assert "next run" in text and "last run" in text
        assert browser.eval("document.querySelectorAll('svg g.run').length") >= 4
        browser.save("status-page.png", docs=True)

        refused_id = runs(tmp_path, "beta")[0].id
        browser.click(f'#profile-beta a[href="runs/{refused_id}"]')
        browser.wait(READY)
        assert f"dirconnector run {refused_id}: beta" in browser.text()
        assert browser.cells("changes", 5) == ["refused"] * 3
        assert browser.cells("changes", 1) == ["- revoke user"] * 3
        assert "The safety guard refused this run" in browser.text()

        first_alpha = runs(tmp_path, "alpha")[-1].id
        browser.open(f"{url}/runs/{first_alpha}", READY)
        assert "mallory@example.com" in browser.text("[data-grid=changes]")
        browser.type("[data-grid=changes] input[type=search]", "mallory")
        browser.wait("document.querySelector('[data-grid=changes] .shown').innerText"
                     ".includes('filtered')")
        browser.assert_inert()

        browser.open(f"{url}/history", READY)
        assert browser.eval("document.querySelectorAll('svg').length") >= 3
        assert browser.eval("document.querySelectorAll('[data-grid=runs] a').length") > 0
        browser.save("status-history.png")
        assert requests.get(f"{url}/runs/nope", timeout=10,
                            headers={"Authorization": f"Bearer {STATUS_TOKEN}"}
                            ).status_code == 404
    finally:
        browser.send("Network.setExtraHTTPHeaders", headers={})
        code, err = stop(daemon)
    assert code == 0, err[-2000:]
    assert STATUS_TOKEN not in err


def test_status_page_warns_when_open_beyond_loopback(tmp_path: Path,
                                                     scim_process: ScimServer) -> None:
    """Bound to every address without a token: a warning in the log and on the page."""
    alpha = profile(tmp_path, "alpha", _tenant(scim_process, "open"), "2s")
    daemon = start(tmp_path, alpha, health=True, addr="0.0.0.0:0")
    try:
        url = daemon.health_url().replace("0.0.0.0", "127.0.0.1")
        page = requests.get(f"{url}/", timeout=10)
        assert page.status_code == 200
        assert "without a token: anyone who can reach this port" in page.text
    finally:
        code, err = stop(daemon)
    assert code == 0
    assert "status page listens on 0.0.0.0 without a token" in err
