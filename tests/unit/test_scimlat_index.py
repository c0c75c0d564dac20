"""The benchmark SCIM server (tests/emulators/scimlat) answers filters by userName and
externalId from its indexes exactly as its scan does."""

from __future__ import annotations

from tests.emulators.scimlat.server import Store


def names(store: Store, flt: str) -> list[str]:
    found = store.query("Users", {"filter": flt})["Resources"]
    return sorted(str(r["userName"]) for r in found)


def test_indexed_filters_follow_creates_edits_and_deletes() -> None:
    """A filter of userName/externalId eq clauses sees creates, a PUT or PATCH of the
    externalId, and deletes; a filter on another attribute still scans."""
    s = Store("http://x/scim/v2")
    a = s.create("Users", {"userName": "A@x.com", "externalId": "e1", "displayName": "A"})
    b = s.create("Users", {"userName": "b@x.com", "externalId": "e2", "displayName": "B"})
    assert names(s, 'externalId eq "e1" or userName eq "B@X.COM"') == ["A@x.com", "b@x.com"]
    s.patch("Users", a["id"], {"Operations": [{"op": "replace", "path": "externalId",
                                                 "value": "e3"}]})
    assert names(s, 'externalId eq "e1"') == []
    assert names(s, 'externalId eq "e3"') == ["A@x.com"]
    s.put("Users", b["id"], {"userName": "b@x.com", "externalId": "e3"})
    assert names(s, 'externalId eq "e3"') == ["A@x.com", "b@x.com"]
    s.delete("Users", a["id"])
    assert names(s, 'externalId eq "e3" or userName eq "a@x.com"') == ["b@x.com"]
    assert names(s, 'displayName eq "B"') == []  # PUT dropped it: the scan agrees
