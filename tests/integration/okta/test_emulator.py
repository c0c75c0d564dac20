"""The emulator answers as Okta's API reference says, so the connector tests mean something."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import jwt
import pytest
import requests

from tests.emulators.okta import OktaEmulator

from .conftest import CLIENT_ID, TOKEN, Org

pytestmark = pytest.mark.integration

SSWS = {"Authorization": f"SSWS {TOKEN}"}


def get(emu: OktaEmulator, path: str, **params: object) -> requests.Response:
    return requests.get(emu.url + path, params=params, headers=SSWS, verify=str(emu.ca_file),
                        timeout=10)


def test_plain_listing_omits_deprovisioned_filter_includes_them(org: Org,
                                                               emulator: OktaEmulator) -> None:
    """List all users omits DEPROVISIONED; filter=status eq "DEPROVISIONED" returns them."""
    plain = {u["id"] for u in get(emulator, "/api/v1/users").json()}
    gone = get(emulator, "/api/v1/users", filter='status eq "DEPROVISIONED"').json()
    assert org.users["ivan"] not in plain and len(plain) == 8
    assert [u["id"] for u in gone] == [org.users["ivan"]]


def test_every_answer_has_rate_headers_and_a_self_link(org: Org,
                                                       emulator: OktaEmulator) -> None:
    """X-Rate-Limit-Limit/Remaining/Reset and Link rel=self are on each list answer."""
    resp = get(emulator, "/api/v1/groups")
    assert resp.headers["Content-Type"] == "application/json"
    assert int(resp.headers["X-Rate-Limit-Reset"]) >= int(time.time())
    assert int(resp.headers["X-Rate-Limit-Remaining"]) < int(resp.headers["X-Rate-Limit-Limit"])
    assert 'rel="self"' in resp.headers["Link"] and 'rel="next"' not in resp.headers["Link"]


def test_429_has_okta_error_body(org: Org, emulator: OktaEmulator) -> None:
    """Past the limit: 429 with errorCode E0000047 and Remaining 0."""
    org.state.rate.limit, org.state.rate.window = 1, 60
    get(emulator, "/api/v1/users")
    resp = get(emulator, "/api/v1/users")
    assert resp.status_code == 429 and resp.json()["errorCode"] == "E0000047"
    assert resp.headers["X-Rate-Limit-Remaining"] == "0" and "Retry-After" not in resp.headers


def test_filter_refuses_attributes_outside_its_list(org: Org, emulator: OktaEmulator) -> None:
    """filter accepts only status/lastUpdated/id/login/email/names: else 400 E0000031."""
    resp = get(emulator, "/api/v1/users", filter='profile.city eq "x"')
    assert resp.status_code == 400 and resp.json()["errorCode"] == "E0000031"


def _assertion(key_path: Path, aud: str, jti: str) -> str:
    now = int(time.time())
    return jwt.encode({"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": aud, "iat": now,
                       "exp": now + 300, "jti": jti}, key_path.read_bytes(), algorithm="RS256")


def test_token_endpoint_checks_audience_and_single_use(org: Org, emulator: OktaEmulator,
                                                       rsa_key: tuple[Path, bytes]) -> None:
    """A good assertion gets a Bearer token; a reused jti or a wrong aud is invalid_client."""
    url = emulator.url + "/oauth2/v1/token"
    jti = uuid.uuid4().hex

    def post(assertion: str) -> requests.Response:
        return requests.post(url, data={
            "grant_type": "client_credentials", "scope": "okta.users.read",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion}, verify=str(emulator.ca_file), timeout=10)

    ok = post(_assertion(rsa_key[0], url, jti))
    assert ok.status_code == 200 and ok.json()["token_type"] == "Bearer"
    assert post(_assertion(rsa_key[0], url, jti)).json()["error"] == "invalid_client"
    wrong_aud = post(_assertion(rsa_key[0], emulator.url, uuid.uuid4().hex))
    assert wrong_aud.status_code == 401 and "audience" in wrong_aud.json()["error_description"]
    bearer = {"Authorization": f"Bearer {ok.json()['access_token']}"}
    groups = requests.get(emulator.url + "/api/v1/groups", headers=bearer,
                          verify=str(emulator.ca_file), timeout=10)
    assert groups.status_code == 403 and "insufficient_scope" in groups.headers[
        "WWW-Authenticate"]
