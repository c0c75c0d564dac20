"""User creates in /Bulk requests (RFC 7644 3.7), with per-operation outcomes.

Each operation carries a ``bulkId`` so its result is matched to its change
(3.7.3: results come back in the BulkResponse, one per operation). A request the
Bulk endpoint refuses as a whole (501 not implemented, 404/405 no endpoint, 413
too large, or any other failure) is not fatal: its changes go back to the caller,
which sends them one POST at a time. A Bulk request whose answer was lost (timeout,
dropped connection) is not sent again blindly: its creates go to the single path
marked uncertain, which looks each one up by externalId before POSTing. An
operation answered 409 is looked up as a single create's would be.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ...errors import AuthError, DirconnectorError, TargetError
from ...http import RETRY_STATUSES, HttpClient
from ...outcome import Outcome
from ...plan import CreateUser
from . import wire as wire
from .ops import Attempts, ScimWriter

log = logging.getLogger(__name__)

BULK_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
# Statuses that say "this server has no usable Bulk endpoint": stop trying it this run.
NO_BULK = frozenset({404, 405, 501})

_Op = tuple[CreateUser, dict[str, Any]]


class BulkCreator:
    """Sends CreateUser changes in Bulk requests; hands back what must go one at a time."""

    def __init__(self, http: HttpClient, writer: ScimWriter, caps: wire.Capabilities,
                 bulk_size: int) -> None:
        self.http = http
        self.writer = writer
        limit = caps.bulk_max_operations or bulk_size
        self.size = max(1, min(bulk_size, limit))
        # Leave room under maxPayloadSize for the envelope (RFC 7644 3.7.4: 413 past it).
        self.max_bytes = int(caps.bulk_max_payload * 0.95) if caps.bulk_max_payload else 0
        self.broken = False
        self.requests = 0

    def batches(self, changes: Sequence[CreateUser]) -> list[list[_Op]]:
        """Split into requests of at most ``size`` operations and ``max_bytes`` bytes."""
        return list(self._batches(changes))

    def _batches(self, changes: Sequence[CreateUser]) -> Iterator[list[_Op]]:
        """The batches, each body made only when the batches before it have been sent: a
        manager created by an earlier request is then referenced by its id at once,
        instead of by a PATCH after the run's creates (ScimWriter.user_body)."""
        cur: list[_Op] = []
        cur_bytes = 200
        for i, change in enumerate(changes):
            if len(cur) >= self.size:
                yield cur
                cur, cur_bytes = [], 200
            op = {"method": "POST", "path": "/Users",
                  "bulkId": f"u{i}", "data": self.writer.user_body(change.user)}
            size = len(json.dumps(op)) + 2
            if cur and self.max_bytes and cur_bytes + size > self.max_bytes:
                yield cur
                cur, cur_bytes = [], 200
            cur.append((change, op))
            cur_bytes += size
        if cur:
            yield cur

    def create(self, changes: Sequence[CreateUser], emit: Callable[[Outcome], None],
               stop: threading.Event) -> list[tuple[CreateUser, bool]]:
        """Create in Bulk, emitting each outcome; return (change, uncertain) to send singly."""
        leftovers: list[tuple[CreateUser, bool]] = []
        for batch in self._batches(changes):
            if stop.is_set():
                break                    # interrupted: send no further Bulk request
            if self.broken:
                leftovers.extend((c, False) for c, _ in batch)
                continue
            leftovers.extend(self._send(batch, emit))
        return leftovers

    def _send(self, batch: list[_Op],
              emit: Callable[[Outcome], None]) -> list[tuple[CreateUser, bool]]:
        t = Attempts()
        body = {"schemas": [BULK_SCHEMA], "Operations": [op for _, op in batch]}
        self.requests += 1
        try:
            resp = self.http.request("POST", "Bulk", data=json.dumps(body),
                                     headers={"Content-Type": wire.SCIM_JSON}, ok=(200,),
                                     on_retry=t.on_retry, retry_connection_errors=False)
            results = resp.json().get("Operations") or []
        except AuthError:
            raise
        except (DirconnectorError, ValueError, AttributeError) as exc:
            status = exc.status if isinstance(exc, TargetError) else None
            if status in NO_BULK:
                self.broken = True
            log.warning("Bulk request of %d creates failed (%s); sending them one at a time",
                        len(batch), exc)
            # The request may have landed before it failed: single POSTs then meet 409.
            return [(c, True) for c, _ in batch]
        by_id = {str(r.get("bulkId")): r for r in results if isinstance(r, dict)}
        leftovers: list[tuple[CreateUser, bool]] = []
        for change, op in batch:
            res = by_id.get(op["bulkId"])
            status = _status(res)
            if status is None or status in RETRY_STATUSES:
                leftovers.append((change, t.uncertain))  # not done (or throttled): retry singly
            elif 200 <= status < 300:
                ref = wire.id_from(None, str(res.get("location") or "") if res else "")
                if not ref:  # 3.7.3 makes location mandatory on success, but be lenient
                    found = self.writer.find("Users", "externalId", change.user.external_id)
                    ref = str(found["id"]) if found else ""
                self.writer.remember_user(change.user.external_id, ref)
                emit(Outcome(change, "ok", ref=ref, attempts=t.retries + 1))
            elif status == 401:
                raise AuthError(f"Bulk operation for {change.user.email} answered 401",
                                status=401)
            elif status == 409:
                emit(self._recover(change, t))
            else:
                emit(Outcome(change, "failed", f"{change.user.email}: Bulk operation answered "
                             f"{status}: {_detail(res)}", attempts=t.retries + 1))
        return leftovers

    def _recover(self, change: CreateUser, t: Attempts) -> Outcome:
        try:
            ref = self.writer.recover_user(change.user, t.uncertain,
                                           TargetError("409 in Bulk", status=409))
        except AuthError:
            raise
        except DirconnectorError as exc:
            return Outcome(change, "failed", f"{change.user.email}: {exc}",
                           attempts=t.retries + 1)
        self.writer.remember_user(change.user.external_id, ref)
        return Outcome(change, "ok", ref=ref, attempts=t.retries + 1)


def _status(result: dict[str, Any] | None) -> int | None:
    """RFC 7644 3.7.3 says ``"status": "201"``; early drafts nested it as {"code": 201}."""
    if result is None:
        return None
    raw = result.get("status")
    if isinstance(raw, dict):
        raw = raw.get("code")
    try:
        return int(str(raw).strip()[:3])
    except (TypeError, ValueError):
        return None


def _detail(result: dict[str, Any] | None) -> str:
    response = result.get("response") if result else None
    if isinstance(response, dict):
        return str(response.get("detail") or response.get("scimType") or response)
    return "no detail"
