"""The client-credentials token: bad secrets, caching, refresh before expiry, revoked tokens."""

from __future__ import annotations

import base64

import pytest
import requests

from dirconnector.errors import SourceError
from dirconnector.state_space import ConnectorState
from tests.emulators.onelogin import Account, OneLoginEmulator
from tests.emulators.onelogin.seed import CLIENT_ID, CLIENT_SECRET, ConnectorFactory

pytestmark = pytest.mark.integration

BAD_SECRET = "not-the-right-secret-9f8e7d"


def test_bad_secret_is_one_clear_line(make_connector: ConnectorFactory) -> None:
    """A wrong client_secret fails fetch() with one line naming the cause, never the secret."""
    with pytest.raises(SourceError) as err:
        make_connector(client_secret=BAD_SECRET).fetch(ConnectorState())
    text = str(err.value)
    assert "\n" not in text
    assert "API credential rejected" in text and "401" in text and "Authentication Failure" in text
    assert CLIENT_ID in text and BAD_SECRET not in text and "client_secret" in text
    assert "Read users" in err.value.hint


def test_bad_secret_in_check(make_connector: ConnectorFactory) -> None:
    """check() reports a rejected credential as a failed item instead of raising."""
    report = make_connector(client_secret=BAD_SECRET).check()
    assert not report.ok
    assert len(report.items) == 1 and "API credential rejected" in report.items[0].detail
    assert BAD_SECRET not in repr(report)


def test_unknown_host_path_is_named(make_connector: ConnectorFactory,
                                    emulator: OneLoginEmulator) -> None:
    """A token endpoint that answers 404 (wrong URL) says to check subdomain/region/base_url."""
    connector = make_connector()
    connector.api._token_http.base_url = emulator.url + "/nowhere/"
    with pytest.raises(SourceError, match="check subdomain, region or base_url"):
        connector.fetch(ConnectorState())


def test_token_is_cached_across_fetches(make_connector: ConnectorFactory,
                                        account: Account) -> None:
    """One token serves many pages and several fetches while it is valid."""
    connector = make_connector()
    connector.fetch(ConnectorState())
    connector.fetch(ConnectorState())
    assert account.token_requests == 1
    assert connector.api.pages_read > 10


def test_token_refreshed_before_expiry(make_connector: ConnectorFactory,
                                       account: Account) -> None:
    """Past expires_in minus a minute the next request first gets a new token; none is refused."""
    now = [1000.0]
    connector = make_connector(clock=lambda: now[0])
    connector.fetch(ConnectorState())
    now[0] += 36000 - 61                   # still a minute and a second left: cached
    connector.fetch(ConnectorState())
    assert account.token_requests == 1
    now[0] += 2                            # inside the last minute: refreshed first
    connector.fetch(ConnectorState())
    assert account.token_requests == 2
    assert account.rejected_tokens == 0


def test_short_lived_token_refreshed_mid_read(make_connector: ConnectorFactory,
                                              account: Account) -> None:
    """With expires_in = 2 s and a slow server, tokens are renewed during one complete read."""
    now = [1000.0]

    def take(seconds: float) -> None:       # the server's requests move the shared clock
        now[0] += seconds

    account.clock, account.sleep = (lambda: now[0]), take
    account.token_ttl = 2
    account.delay = 0.12                    # ~26 requests -> a 3 s read
    snap = make_connector(page_size=5, clock=lambda: now[0]).fetch(ConnectorState())
    assert snap.complete and len(snap.users) == 43 and len(snap.groups) == 4
    assert account.token_requests >= 2


def test_revoked_token_is_replaced_once(make_connector: ConnectorFactory,
                                        account: Account) -> None:
    """A 401 on a resource call drops the cached token and retries once with a new one."""
    connector = make_connector()
    connector.fetch(ConnectorState())
    account.revoke_tokens()
    snap = connector.fetch(ConnectorState())
    assert len(snap.users) == 43
    assert account.token_requests == 2 and account.rejected_tokens == 1


def test_emulator_token_endpoint_follows_the_docs(emulator: OneLoginEmulator,
                                                  tls: tuple[object, str]) -> None:
    """The emulator takes Basic, the client_id:/client_secret: header and a form body alike."""
    url = emulator.url + "/auth/oauth2/v2/token"
    verify = str(tls[1])
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    a = requests.post(url, json={"grant_type": "client_credentials"}, verify=verify,
                      headers={"Authorization": f"Basic {basic}"}, timeout=5)
    b = requests.post(url, json={"grant_type": "client_credentials"}, verify=verify, timeout=5,
                      headers={"Authorization": f"client_id:{CLIENT_ID}, "
                                                f"client_secret:{CLIENT_SECRET}"})
    c = requests.post(url, data={"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                 "client_secret": CLIENT_SECRET}, verify=verify, timeout=5)
    assert [r.status_code for r in (a, b, c)] == [200, 200, 200]
    assert a.json()["access_token"] == b.json()["access_token"] == c.json()["access_token"]
    assert a.json()["token_type"] == "bearer" and a.json()["expires_in"] > 35000
    bad = requests.post(url, json={"grant_type": "password"}, verify=verify, timeout=5,
                        headers={"Authorization": f"Basic {basic}"})
    assert bad.status_code == 400
    v2 = requests.get(emulator.url + "/api/2/users", verify=verify, timeout=5)
    v1 = requests.get(emulator.url + "/api/1/groups", verify=verify, timeout=5)
    assert v2.json() == {"message": "Unauthorized", "statusCode": 401, "name": "UnauthorizedError"}
    assert v1.json()["status"]["message"] == "Authentication Failure"


def test_untrusted_certificate_is_one_line_with_a_hint(make_connector: ConnectorFactory) -> None:
    """Without the emulator's CA the TLS failure names the host and suggests ca_file."""
    with pytest.raises(SourceError) as err:
        make_connector(ca_file=None).fetch(ConnectorState())
    assert "TLS handshake" in str(err.value) and "\n" not in str(err.value)
    assert "ca_file" in err.value.hint
