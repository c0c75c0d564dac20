"""Retries, 409-after-timeout recovery, Bulk and ETags, through a fault-injecting proxy."""

from __future__ import annotations

from dataclasses import replace

import pytest
import requests

from dirconnector.diff import diff
from dirconnector.model import Snapshot
from dirconnector.outcome import Outcome

from .conftest import TOKEN, MakeTarget, ScimServer, directory
from .proxy import Fault, FaultProxy
from .test_sync import next_plan, sync

pytestmark = pytest.mark.integration


def external_ids(server: ScimServer, path: str) -> list[str]:
    return sorted(str(r.get("externalId")) for r in server.all(path))


def failed(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status != "ok"]


def test_retries_converge_without_duplicates(make_target: MakeTarget, proxy: FaultProxy,
                                             scim_server: ScimServer) -> None:
    """429+Retry-After, 503, lost answers (502, dropped, timed out) all converge, no duplicates."""
    users, groups = directory(30)
    target = make_target(proxy.url, bulk="off", timeout=1.0, concurrency=4)
    proxy.inject("POST", scim_server.path + "/Users", Fault.status_code(429, retry_after="0.1"))
    # The server created the user, the gateway answered 502: the retried POST meets 409.
    proxy.inject("POST", scim_server.path + "/Users", Fault.status_after(502))
    # Lost answers on the socket: looked up by externalId before any second POST.
    proxy.inject("POST", scim_server.path + "/Users", Fault.drop_after(), times=2)
    proxy.inject("POST", scim_server.path + "/Groups", Fault.slow(1.5))  # server acts, client times out
    proxy.inject("PATCH", scim_server.path + "/Groups", Fault.status_code(503))
    plan, outcomes = sync(target, users, groups)
    assert failed(outcomes) == []
    assert len(outcomes) == len(plan.changes)
    # 429 and 502 cost one extra POST each; dropped and timed-out ones cost a lookup.
    assert proxy.count("POST", "Users") == 30 + 2
    assert proxy.count("POST", "Groups") == 5
    assert [s for m, p, s in proxy.log if m == "POST" and p.endswith("/Users")].count(409) == 1
    assert external_ids(scim_server, "Users") == sorted(u.external_id for u in users)
    assert external_ids(scim_server, "Groups") == sorted(g.external_id for g in groups)
    retried = [o for o in outcomes if o.attempts > 1]
    assert len(retried) >= 4
    assert next_plan(target, users, groups).empty


def test_conflict_without_retry_is_a_failure(make_target: MakeTarget,
                                             scim_server: ScimServer) -> None:
    """A 409 on a first POST for someone else's account fails that change only, with one line."""
    users, _ = directory(3)
    target = make_target(bulk="off")
    plan = diff(Snapshot.build(users, []), target.snapshot())
    # Someone else takes user001's userName between plan and apply.
    requests.post(f"{scim_server.url}/Users", timeout=10,
                  headers={"Authorization": f"Bearer {TOKEN}"},
                  json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": "user001@example.org", "externalId": "someone-else"}
                  ).raise_for_status()
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    bad = failed(outcomes)
    assert [o.change.user.email for o in bad] == ["user001@example.org"]  # type: ignore[union-attr]
    assert "409" in bad[0].error and "\n" not in bad[0].error
    assert sum(o.status == "ok" for o in outcomes) == 2


def test_bulk_used_when_offered(make_target: MakeTarget, proxy: FaultProxy,
                                scim_server: ScimServer) -> None:
    """Creates go in Bulk requests of bulk_size when the server offers Bulk; each is recorded."""
    users, groups = directory(50)
    target = make_target(proxy.url, bulk_size=20)
    plan, outcomes = sync(target, users, groups)
    assert proxy.count("POST", "Bulk") == 3  # 20 + 20 + 10
    assert proxy.count("POST", "Users") == 0
    assert target.bulk_requests == 3
    creates = [o for o in outcomes if o.change.kind == "create_user"]
    assert len(creates) == 50 and all(o.status == "ok" and o.ref for o in creates)
    assert len({o.ref for o in creates}) == 50
    assert any("3 Bulk request" in n for n in target.describe(plan))
    assert next_plan(target, users, groups).empty


def test_bulk_off_sends_single_posts(make_target: MakeTarget, proxy: FaultProxy) -> None:
    """bulk = "off" never calls /Bulk."""
    users, groups = directory(10)
    sync(make_target(proxy.url, bulk="off"), users, groups)
    assert proxy.count("POST", "Bulk") == 0
    assert proxy.count("POST", "Users") == 10


def test_bulk_falls_back_to_single_requests(make_target: MakeTarget, proxy: FaultProxy,
                                            scim_server: ScimServer) -> None:
    """A Bulk endpoint answering 501 is dropped for the run; its creates go one POST each."""
    users, groups = directory(30)
    proxy.inject("POST", scim_server.path + "/Bulk", Fault.status_code(501))
    target = make_target(proxy.url, bulk_size=10)
    _, outcomes = sync(target, users, groups)
    assert failed(outcomes) == []
    assert proxy.count("POST", "Bulk") == 1
    assert proxy.count("POST", "Users") == 30
    assert external_ids(scim_server, "Users") == sorted(u.external_id for u in users)


def test_bulk_dropped_connection_recovers(make_target: MakeTarget, proxy: FaultProxy,
                                          scim_server: ScimServer) -> None:
    """A Bulk request that landed but lost its answer is not re-sent blindly: its creates are found."""
    users, groups = directory(20)
    proxy.inject("POST", scim_server.path + "/Bulk", Fault.drop_after())
    target = make_target(proxy.url, bulk_size=10)
    _plan, outcomes = sync(target, users, groups)
    assert failed(outcomes) == []
    assert proxy.count("POST", "Bulk") == 2
    assert proxy.count("POST", "Users") == 0  # the 10 lost ones were found by externalId
    creates = [o for o in outcomes if o.change.kind == "create_user"]
    assert len({o.ref for o in creates}) == 20
    assert external_ids(scim_server, "Users") == sorted(u.external_id for u in users)
    assert next_plan(target, users, groups).empty


def test_etag_conflict_is_reread_once(make_target: MakeTarget, proxy: FaultProxy,
                                      scim_server: ScimServer) -> None:
    """If-Match carries the snapshot's version; a 412 re-reads the resource and succeeds."""
    users, groups = directory(5)
    target = make_target(proxy.url)
    sync(target, users, groups)
    before = target.snapshot()
    ref = scim_server.find_user("ext-002")["id"]
    # Someone else edits the account after our read: the version we hold is now stale.
    requests.patch(f"{scim_server.url}/Users/{ref}", timeout=10,
                   headers={"Authorization": f"Bearer {TOKEN}"},
                   json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                         "Operations": [{"op": "replace", "path": "title", "value": "x"}]}
                   ).raise_for_status()
    changed = [replace(u, display_name="Grace Hopper") if u.external_id == "ext-002" else u
               for u in users]
    plan = diff(Snapshot.build(changed, groups), before)
    assert [c.kind for c in plan.changes] == ["update_user"]
    proxy.reset()
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    assert [o.status for o in outcomes] == ["ok"]
    assert [s for m, _, s in proxy.log if m == "PATCH"] == [412, 204]
    assert scim_server.find_user("ext-002")["displayName"] == "Grace Hopper"
