"""TLS with a private CA (trustme), rejected tokens, and servers without PATCH."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from dirconnector.errors import AuthError
from dirconnector.outcome import Outcome
from dirconnector.targets.scim.target import ScimSettings, ScimTarget
from dirconnector.testing import check_writes_external_id

from .conftest import TOKEN, MakeTarget, ScimServer, directory, start_server
from .proxy import Fault, FaultProxy
from .test_sync import next_plan, sync

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_proxy(scim_server: ScimServer, tmp_path: Path) -> Iterator[tuple[FaultProxy, Path]]:
    """The SCIM server behind a TLS endpoint whose certificate a private CA signed."""
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    proxy = FaultProxy(scim_server.port, ssl_context=ctx).start()
    try:
        yield proxy, ca_file
    finally:
        proxy.stop()


def test_tls_with_ca_file(make_target: MakeTarget, tls_proxy: tuple[FaultProxy, Path]) -> None:
    """With ca_file naming the private CA, check and a full sync work over HTTPS."""
    proxy, ca_file = tls_proxy
    assert proxy.url.startswith("https://")
    target = make_target(proxy.url, ca_file=str(ca_file))
    assert target.check().ok
    users, groups = directory(5)
    _, outcomes = sync(target, users, groups)
    assert all(o.status == "ok" for o in outcomes)
    assert next_plan(target, users, groups).empty


def test_tls_wrong_ca_is_one_clear_line(make_target: MakeTarget,
                                        tls_proxy: tuple[FaultProxy, Path],
                                        tmp_path: Path) -> None:
    """A certificate from another CA fails check with one line that says TLS and what to set."""
    proxy, _ = tls_proxy
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    report = make_target(proxy.url, ca_file=str(other)).check()
    assert not report.ok
    bad = [i for i in report.items if not i.ok]
    assert len(bad) == 1
    assert "TLS" in bad[0].detail and "ca_file" in bad[0].detail
    assert "\n" not in bad[0].detail


def test_rejected_token(scim_server: ScimServer) -> None:
    """A wrong token: check says 401 in one line without the token; apply raises AuthError."""
    secret = "wrong-token-1234567"
    target = ScimTarget(ScimSettings(type="scim", url=scim_server.url, token=secret))
    report = target.check()
    bad = [i for i in report.items if not i.ok]
    assert len(bad) == 1 and "401" in bad[0].detail and "token" in bad[0].detail
    assert secret not in bad[0].detail and "\n" not in bad[0].detail
    assert secret not in repr(target.settings)
    good = ScimTarget(ScimSettings(type="scim", url=scim_server.url, token=TOKEN))
    users, groups = directory(3)
    from dirconnector.diff import diff
    from dirconnector.model import Snapshot
    plan = diff(Snapshot.build(users, groups), good.snapshot())
    outcomes: list[Outcome] = []
    with pytest.raises(AuthError):
        target.apply(plan, outcomes.append)
    assert all(o.status != "ok" for o in outcomes)


def test_server_without_patch_gets_put(tmp_path: Path) -> None:
    """When the ServiceProviderConfig says patch unsupported, updates are GET + PUT and converge."""
    config = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
              "patch": {"supported": False}, "bulk": {"supported": False},
              "filter": {"supported": True, "maxResults": 1000},
              "changePassword": {"supported": False}, "sort": {"supported": False},
              "etag": {"supported": True}, "authenticationSchemes": []}
    spc = tmp_path / "spc.json"
    spc.write_text(json.dumps(config))
    server = start_server("--service-provider-config", str(spc))
    try:
        proxy = FaultProxy(server.port).start()
        target = ScimTarget(ScimSettings(type="scim", url=proxy.url + "/v2", token=TOKEN))
        users, groups = directory(6)
        sync(target, users, groups)
        from dataclasses import replace
        users[2] = replace(users[2], display_name="Katherine Johnson")
        disabled = [replace(u, active=False) if u.external_id == "ext-004" else u for u in users]
        _, outcomes = sync(target, disabled, groups[1:2])
        assert all(o.status == "ok" for o in outcomes), outcomes
        assert proxy.count("PATCH", "Users") == 0 and proxy.count("PATCH", "Groups") == 0
        assert proxy.count("PUT", "Users") == 2
        assert next_plan(target, disabled, groups[1:2]).empty
        # External ids too: set, and cleared by a PUT without the attribute (RFC 7644 3.5.1).
        check_writes_external_id(target)
        assert proxy.count("PATCH", "Users") == 0 and proxy.count("PATCH", "Groups") == 0
        proxy.stop()
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def test_token_revoked_mid_run_stops(make_target: MakeTarget, proxy: FaultProxy,
                                     scim_server: ScimServer) -> None:
    """A 401 during apply raises AuthError and no further change is started."""
    from dataclasses import replace

    from dirconnector.diff import Policy, diff
    from dirconnector.model import Snapshot
    users, groups = directory(6)
    target = make_target(proxy.url, concurrency=1)
    sync(target, users, groups)
    disabled = [replace(u, active=False) for u in users]
    plan = diff(Snapshot.build(disabled, groups), target.snapshot(), Policy())
    assert plan.counts()["revoke_user"] == 6
    proxy.reset()
    proxy.inject("PATCH", scim_server.path + "/Users", Fault.status_code(401))
    outcomes: list[Outcome] = []
    with pytest.raises(AuthError):
        target.apply(plan, outcomes.append)
    assert proxy.count("PATCH", "Users") == 1
    assert outcomes == []
    assert all(u["active"] for u in scim_server.all("Users"))
