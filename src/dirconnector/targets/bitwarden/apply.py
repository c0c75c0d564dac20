"""Sending a :class:`~.importer.Work` and recording every change's outcome.

Order follows DESIGN (users before memberships, removals last): relinks of members,
restores, group adoptions and relinks, the import (member batches, then group
batches), membership repairs, revokes, the removal import, member and group
deletions. An import answer of 200 is not taken on trust: the server skips some
entries without saying so (a known email, a missing seat), so every imported change
is checked against a fresh read of the members and groups. Group member ids are
read back only after an ambiguous answer: an accepted import sets a group's members
to those sent that the organization knows by external id (reference 2.6, step 7).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from ...errors import AuthError, DirconnectorError, TransientError
from ...http import READ_BACK
from ...model import Group, Snapshot, normalize_email
from ...outcome import Outcome
from ...plan import (
    AddMembers,
    Change,
    CreateGroup,
    CreateUser,
    DeleteUser,
    LinkGroup,
    LinkUser,
    Plan,
    RelinkGroup,
    RelinkUser,
    RemoveMembers,
    RenameGroup,
    RestoreUser,
    RevokeUser,
    UpdateUser,
)
from .api import REVOKED, BitwardenApi
from .importer import ImportRequest, Work

log = logging.getLogger(__name__)

IMPORT = "public/organization/import"


class Applier:
    """One apply run against one organization."""

    def __init__(self, api: BitwardenApi, current: Snapshot, invite_users: bool,
                 concurrency: int) -> None:
        self.api = api
        self.current = current
        self.invite_users = invite_users
        self.concurrency = concurrency
        self._pending: dict[int, Change] = {}
        self._import_errors: dict[int, str] = {}
        self._record: Callable[[Outcome], None] = lambda o: None
        self._stop = threading.Event()

    def run(self, plan: Plan, work: Work, record: Callable[[Outcome], None],
            stop: threading.Event) -> None:
        """Send ``work``; once ``stop`` is set nothing new starts (the rest stays pending)."""
        self._pending = {id(c): c for c in plan.changes}
        self._record = record
        self._stop = stop
        try:
            self._run(work)
        except AuthError as exc:
            for change in list(self._pending.values()):
                self._done(change, "skipped", f"not attempted: {exc}")
            raise

    def _done(self, change: Change, status: Any, error: str = "", ref: str = "") -> None:
        if self._pending.pop(id(change), None) is not None:
            self._record(Outcome(change, status, error, ref))

    def _endpoint(self, change: Change, method: str, path: str, body: Any = None) -> bool:
        if self._stop.is_set():
            return False                 # interrupted: start nothing new
        try:
            self.api.call(method, path, json=body)
        except AuthError:
            raise
        except DirconnectorError as exc:
            if not self._already_done(change):
                self._done(change, "failed", str(exc))
                return False
        self._done(change, "ok", ref=getattr(change, "ref", ""))
        return True

    def _already_done(self, change: Change) -> bool:
        """After an error, does the server already hold the change's effect?

        A revoke whose answer was lost is retried and answered 400 "Already revoked.";
        the member's status, read back, tells what really happened. The read-back is
        tried three times (READ_BACK: it may meet the same flaky gateway) on any error,
        not only on what HttpClient retries, waiting through HttpClient's Backoff.
        """
        if not isinstance(change, RevokeUser | RestoreUser | RelinkUser):
            return False
        member: Any = None
        waits = self.api.http.backoff(READ_BACK)
        attempt = 0
        while True:
            attempt += 1
            try:
                member = self.api.get(f"public/members/{change.ref}")
                break
            except AuthError:
                raise
            except DirconnectorError:
                if not waits.again(attempt):
                    break
        if isinstance(change, RelinkUser):
            return isinstance(member, dict) and member.get("externalId") == \
                change.user.external_id
        revoked = isinstance(member, dict) and member.get("status") == REVOKED
        return revoked if isinstance(change, RevokeUser) else not revoked

    def _run(self, work: Work) -> None:
        for change, reason in work.refused:
            self._done(change, "skipped" if isinstance(change, UpdateUser) else "failed", reason)
        self._relink_members(work.member_relinks)
        for restore in work.restores:
            self._endpoint(restore, "POST", f"public/members/{restore.ref}/restore")
        lost_groups: dict[str, str] = {}
        for link in work.group_links:
            reason = self._adopt_group(link)
            if reason:
                lost_groups[link.external_id] = reason
        imported = self._send_imports(work.imports, lost_groups)
        for group_ref, refs in work.keep_members.items():
            self._keep_members(group_ref, refs)
        for revoke in work.revokes:
            self._endpoint(revoke, "POST", f"public/members/{revoke.ref}/revoke")
        imported += self._send_imports(work.removal_imports, {})
        for delete in work.member_deletes:
            self._endpoint(delete, "DELETE", f"public/members/{delete.ref}")
        for group in work.group_deletes:
            self._endpoint(group, "DELETE", f"public/groups/{group.ref}")
        if imported:
            self._verify(imported)

    def _relink_members(self, relinks: Iterable[RelinkUser]) -> None:
        """PUT each member's new external id (read first: BitwardenApi.set_member_external_id),
        ``concurrency`` at a time; outcomes are recorded on this thread as they finish."""
        todo = iter(relinks)
        running: set[Future[None]] = set()
        owner: dict[Future[None], RelinkUser] = {}
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            while True:
                while len(running) < self.concurrency and not self._stop.is_set():
                    change = next(todo, None)
                    if change is None:
                        break
                    future = pool.submit(self.api.set_member_external_id, change.ref,
                                         change.user.external_id)
                    running.add(future)
                    owner[future] = change
                if not running:
                    return
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    change = owner.pop(future)
                    exc = future.exception()
                    if exc is None:
                        self._done(change, "ok", ref=change.ref)
                    elif isinstance(exc, AuthError) or not isinstance(exc, DirconnectorError):
                        raise exc                # every later change is pointless, or a bug
                    elif self._already_done(change):
                        self._done(change, "ok", ref=change.ref)
                    else:
                        self._done(change, "failed", str(exc))

    def _adopt_group(self, link: LinkGroup | RelinkGroup) -> str:
        """PUT the directory's external id on a group found by name or by another tool's key,
        keeping its collections."""
        try:
            self.api.set_group_external_id(link.ref, link.external_id, link.name)
        except AuthError:
            raise
        except DirconnectorError as exc:
            self._done(link, "failed", str(exc))
            what = "adopting" if isinstance(link, LinkGroup) else "relinking"
            return f"not sent: {what} group {link.name!r} failed ({exc})"
        if isinstance(link, RelinkGroup):
            self._done(link, "ok", ref=link.ref)
        return ""

    def _send_imports(self, requests: Iterable[ImportRequest],
                      lost_groups: dict[str, str]) -> list[Change]:
        """POST each import; returns the changes whose effect the verification must check."""
        sent: list[Change] = []
        broken = ""
        for req in requests:
            if self._stop.is_set():
                break                    # interrupted: send no further import
            if lost_groups:
                req = self._without(req, lost_groups)
            if not req.members and not req.groups:
                continue
            if broken:
                for change in req.changes:
                    self._done(change, "failed", f"not sent: an earlier import request "
                                                 f"failed ({broken})")
                continue
            try:
                self.api.call("POST", IMPORT, json=req.body(self.invite_users))
            except AuthError:
                raise
            except DirconnectorError as exc:
                broken = str(exc)
                status = getattr(exc, "status", None)
                if isinstance(exc, TransientError) or (status is not None and status >= 500):
                    # Ambiguous: the server may have imported before failing; the fresh
                    # read after the imports decides each change, with this error as the
                    # reason for those that did not happen.
                    for change in req.changes:
                        self._import_errors[id(change)] = broken
                    sent.extend(req.changes)
                else:
                    for change in req.changes:
                        self._done(change, "failed", broken)
                continue
            log.info("bitwarden: import of %d member(s) and %d group(s) accepted",
                     len(req.members), len(req.groups))
            sent.extend(req.changes)
        return sent

    def _without(self, req: ImportRequest, lost: dict[str, str]) -> ImportRequest:
        groups = tuple(g for g in req.groups if g["externalId"] not in lost)
        keep: list[Change] = []
        for change in req.changes:
            gext = _group_ext(change)
            if gext in lost:
                self._done(change, "failed", lost[gext])
            else:
                keep.append(change)
        return ImportRequest(req.members, groups, req.large, tuple(keep))

    def _keep_members(self, group_ref: str, refs: frozenset[str]) -> None:
        """Put back members without an external id the import dropped from a group."""
        try:
            now = self.api.get(f"public/groups/{group_ref}/member-ids")
            self.api.call("PUT", f"public/groups/{group_ref}/member-ids",
                          json={"memberIds": sorted(set(now or ()) | refs)})
        except AuthError:
            raise
        except DirconnectorError as exc:
            log.warning("bitwarden: could not restore %d manual member(s) of group %s: %s",
                        len(refs), group_ref, exc)

    def _verify(self, changes: list[Change]) -> None:
        # A group in an import answered 200 holds exactly the members sent that the
        # organization knows by external id (reference 2.6, step 7): its membership
        # follows from the member list, read once. Only groups of an ambiguous import
        # (5xx, lost answer) have their member ids read back, one request each.
        unsure = {g for c in changes if id(c) in self._import_errors
                  and (g := _group_ext(c))}
        try:
            members, groups = self.api.read_raw(members_for=unsure, concurrency=self.concurrency)
        except AuthError:
            raise
        except DirconnectorError as exc:
            log.warning("bitwarden: imports were sent but could not be verified: %s", exc)
            for change in changes:
                error = self._import_errors.get(id(change), "")
                self._done(change, "failed" if error else "ok", error)
            return
        index = Index(members, groups,
                      inferred={g for c in changes if (g := _group_ext(c))} - unsure)
        for change in changes:
            reason, ref = verify(change, index)
            if reason and id(change) in self._import_errors:
                reason = self._import_errors[id(change)]
            self._done(change, "failed" if reason else "ok", reason, ref)


def _group_ext(change: Change) -> str:
    if isinstance(change, CreateGroup | LinkGroup | RenameGroup | RelinkGroup):
        return change.external_id
    if isinstance(change, AddMembers | RemoveMembers):
        return change.group_external_id
    return ""


class Index:
    """The server after the imports, indexed for checking many changes against it.

    Built from the member list as the API returns it: a verification looks up a few
    fields of each member, and making 100k User records for it cost 0.4 s.
    """

    def __init__(self, members: list[dict[str, Any]], groups: list[Group],
                 inferred: set[str] | None = None) -> None:
        self.external_id = {str(m["id"]): str(m.get("externalId") or "") for m in members}
        """Member id -> its external id ("" when it has none)."""
        self.by_external_id = {ext: ref for ref, ext in self.external_id.items() if ext}
        self.groups_by_ext = {g.external_id: g for g in groups if g.external_id}
        self.inferred = inferred or set()
        """External ids of groups whose member ids were not read (imported with a 200)."""
        self._members = members
        self._by_email: dict[str, str] | None = None

    def by_email(self, email: str) -> str | None:
        """The id of the member with this (normalised) email; indexed on first use."""
        if self._by_email is None:
            self._by_email = {normalize_email(m.get("email")): str(m["id"])
                              for m in self._members}
        return self._by_email.get(email)


def verify(change: Change, index: Index) -> tuple[str, str]:
    """Why ``change`` did not take effect ("" if it did), and the touched ref."""
    by_external_id = index.by_external_id
    if isinstance(change, CreateUser):
        ref = by_external_id.get(change.user.external_id)
        if ref is not None:
            return "", ref
        holder = index.by_email(change.user.email)
        if holder is not None:
            return (f"the server skipped it: {change.user.email} is already a member "
                    f"(external id {index.external_id[holder] or 'none'})", holder)
        return "the server accepted the import but did not create the member (seats?)", ""
    if isinstance(change, LinkUser):
        if index.external_id.get(change.ref) == change.user.external_id:
            return "", change.ref
        return "the server did not link the member by email", change.ref
    if isinstance(change, DeleteUser):
        if change.ref in index.external_id:
            return "still a member after the import (owners and members without an external "\
                   "id are never removed by it)", change.ref
        return "", change.ref
    gext = _group_ext(change)
    group = index.groups_by_ext.get(gext)
    if group is None:
        return f"group {gext!r} is not on the server after the import", ""
    if isinstance(change, CreateGroup | LinkGroup | RenameGroup) and group.name != change.name:
        return f"group is named {group.name!r}, not {change.name!r}", group.key
    if isinstance(change, AddMembers):
        missing = [m.email for m in change.members
                   if (ref := by_external_id.get(m.external_id)) is None
                   or (gext not in index.inferred and ref not in group.member_ids)]
        if missing:
            return f"not added: {', '.join(missing[:5])}", group.key
    if isinstance(change, RemoveMembers) and gext not in index.inferred:
        left = [m.email for m in change.members if m.ref in group.member_ids]
        if left:
            return f"still members: {', '.join(left[:5])}", group.key
    return "", group.key
