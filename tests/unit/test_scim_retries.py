"""The SCIM writer's own retry loops, on a function transport: what they send and wait."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from dirconnector.http import HttpClient, Request, Response
from dirconnector.model import User
from dirconnector.outcome import Outcome
from dirconnector.plan import RevokeUser
from dirconnector.targets.scim import wire
from dirconnector.targets.scim.ops import Attempts, ScimWriter

ALICE = User("u1", "alice@example.com", "alice@example.com", "Alice", "Alice", "A")


def writer(handler, slept: list[float]) -> ScimWriter:
    http = HttpClient("https://scim.example.test/v2", side="target", label="SCIM",
                      sleep=slept.append, transport=handler)
    return ScimWriter(http, wire.capabilities(None, "generic"), member_chunk=100,
                      users_by_ext={}, groups_by_ext={}, versions={})


def test_a_create_whose_answer_was_lost_is_looked_up_not_posted_again() -> None:
    """A POST that dropped its connection waits one back-off, then finds the user it made."""
    sent: list[Request] = []
    slept: list[float] = []

    def server(request: Request) -> Response:
        sent.append(request)
        if request.method == "POST":
            raise ConnectionResetError("connection reset by peer")
        return Response(200, json={"Resources": [{"id": "41", "externalId": "u1"}]})

    t = Attempts()
    assert writer(server, slept).create_user(ALICE, t) == "41"
    assert [r.method for r in sent] == ["POST", "GET"]
    assert parse_qs(urlsplit(sent[1].url).query)["filter"] == ['externalId eq "u1"']
    assert len(slept) == 1 and 0.25 <= slept[0] <= 0.5 and t.retries == 1


def test_a_read_back_after_an_ambiguous_failure_tries_three_times() -> None:
    """A revoke still answered 502 after HttpClient's tries is read back three times, two
    short waits apart, before it is reported failed."""
    sent: list[Request] = []
    slept: list[float] = []

    def server(request: Request) -> Response:
        sent.append(request)
        return Response(502 if request.method == "PATCH" else 404, text="gateway")

    change = RevokeUser("41", "u1", "alice@example.com", "disabled")
    outcome: Outcome = writer(server, slept).run(change)
    assert outcome.status == "failed" and "gave up after 6 attempts" in outcome.error
    assert [r.method for r in sent] == ["PATCH"] * 6 + ["GET"] * 3
    assert len(slept) == 5 + 2
    assert 0.2 <= slept[-2] <= 0.4 and 0.4 <= slept[-1] <= 0.8
