"""SCIM wire details: filter quoting, resource mapping, capabilities, paging edge cases."""

from __future__ import annotations

import json

import pytest

from dirconnector.errors import TargetError
from dirconnector.model import User
from dirconnector.outcome import Outcome
from dirconnector.plan import CreateUser, Plan
from dirconnector.targets.scim import wire as wire

from .conftest import MakeTarget, ScimServer, directory
from .proxy import Fault, FaultProxy
from .test_sync import sync


def test_filter_values_are_escaped() -> None:
    """Quotes and backslashes in a filter value are escaped as JSON strings (RFC 7644 3.4.2.2)."""
    assert wire.eq_filter("externalId", 'a"b\\c') == 'externalId eq "a\\"b\\\\c"'


def test_email_read_from_primary_then_work_then_username() -> None:
    """A server user's email is the primary email, else the work one, else userName; lower-cased."""
    base = {"id": "1", "userName": "Login@Example.org"}
    assert wire.user_from(base).email == "login@example.org"
    both = {**base, "emails": [{"value": "w@x.org", "type": "work"},
                               {"value": "P@x.org", "primary": True}]}
    assert wire.user_from(both).email == "p@x.org"
    work = {**base, "emails": [{"value": "h@x.org", "type": "home"},
                               {"value": "w@x.org", "type": "work"}]}
    assert wire.user_from(work).email == "w@x.org"
    assert wire.user_from({**base, "active": "False"}).active is False


def test_bitwarden_url_shape() -> None:
    """Only a path ending in /v2/<guid> looks like Bitwarden's SCIM endpoint."""
    assert wire.looks_like_bitwarden(
        "https://scim.bitwarden.com/v2/2f2b7b3e-8b7a-4a3e-9a51-0c0f6d2d5e11")
    assert wire.looks_like_bitwarden("https://vault.example.com/scim/v2/"
                                     "2f2b7b3e8b7a4a3e9a510c0f6d2d5e11/")
    assert not wire.looks_like_bitwarden("https://app.example.com/scim/v2")


def test_capabilities_from_service_provider_config() -> None:
    """Bulk limits, PATCH and ETag support are read from the ServiceProviderConfig."""
    caps = wire.capabilities({"patch": {"supported": True}, "etag": {"supported": False},
                              "bulk": {"supported": True, "maxOperations": "50",
                                       "maxPayloadSize": 1000},
                              "filter": {"maxResults": 200}}, "generic")
    assert (caps.patch, caps.etag, caps.bulk) == (True, False, True)
    assert (caps.bulk_max_operations, caps.filter_max_results) == (50, 200)
    none = wire.capabilities(None, "generic")
    assert none.patch and not none.bulk and not none.advertised


def test_local_patch_for_put_servers() -> None:
    """Our own PATCH ops applied to a read resource give the PUT body, meta dropped."""
    res = {"id": "g", "meta": {"version": "1"}, "displayName": "A",
           "members": [{"value": "u1"}, {"value": "u2"}], "name": {"givenName": "x"}}
    ops = [*wire.add_members_op(["u3", "u1"]), *wire.remove_members_ops(["u2"]),
           wire.replace_op("displayName", "B"), wire.replace_op("name.familyName", "y")]
    body = wire.apply_patch_locally(res, ops)
    assert "meta" not in body and body["displayName"] == "B"
    assert [m["value"] for m in body["members"]] == ["u1", "u3"]
    assert body["name"] == {"givenName": "x", "familyName": "y"}


@pytest.mark.integration
def test_short_pages_are_followed(make_target: MakeTarget, proxy: FaultProxy) -> None:
    """A server that returns fewer resources than asked is paged on by startIndex to totalResults."""
    users, groups = directory(17)
    sync(make_target(), users, groups)

    def three_per_page(method: str, path: str, body: bytes) -> bytes:
        data = json.loads(body)
        if "Resources" in data:
            data["Resources"] = data["Resources"][:3]
        return json.dumps(data).encode()

    proxy.filter_response = three_per_page
    snap = make_target(proxy.url).snapshot()
    assert len(snap.users) == 17
    assert proxy.count("GET", "Users") == 6  # 3*5 + 2


@pytest.mark.integration
def test_read_that_stops_early_raises(make_target: MakeTarget, proxy: FaultProxy) -> None:
    """A listing that ends before totalResults raises instead of returning a partial server."""
    users, groups = directory(8)
    sync(make_target(), users, groups)

    def first_page_only(method: str, path: str, body: bytes) -> bytes:
        data = json.loads(body)
        if data.get("startIndex", 1) > 1:
            data["Resources"] = []
        elif "Resources" in data:
            data["Resources"] = data["Resources"][:5]
        return json.dumps(data).encode()

    proxy.filter_response = first_page_only
    with pytest.raises(TargetError, match="announced 8 resources but returned 5"):
        make_target(proxy.url).snapshot()


@pytest.mark.integration
def test_conflict_lookup_quotes_values(make_target: MakeTarget, proxy: FaultProxy,
                                       scim_server: ScimServer) -> None:
    """The 409 lookup finds an external id holding quotes and backslashes."""
    user = User('odd"id\\1', "odd@example.org", display_name="Odd")
    target = make_target(proxy.url, bulk="off")
    proxy.inject("POST", scim_server.path + "/Users", Fault.status_after(502))
    outcomes: list[Outcome] = []
    target.apply(Plan((CreateUser(user),), "", ""), outcomes.append)
    assert [o.status for o in outcomes] == ["ok"], outcomes
    assert outcomes[0].ref == scim_server.all("Users")[0]["id"]
    assert len(scim_server.all("Users")) == 1
