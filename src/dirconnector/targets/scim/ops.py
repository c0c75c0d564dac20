"""Carry out one plan change against a SCIM server: the request, its recovery, its outcome.

``ScimWriter.run(change)`` returns the change's Outcome. Retries of 429/5xx and
connection failures happen in HttpClient; this module adds what only SCIM knows:
a create that meets 409 after a retried POST looks the object up and continues
(the first attempt reached the server), If-Match with the version read in the
snapshot and one re-read after 412 (RFC 7644 3.14), PUT when PATCH is not offered,
and Bitwarden's refusals said out loud instead of silently ignored.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ...errors import AuthError, Conflict, DirconnectorError, TargetError, TransientError
from ...http import READ_BACK, HttpClient, Response
from ...mapping import MANAGER, UserMapping
from ...model import User, value_of
from ...outcome import Outcome
from ...plan import (
    AddMembers,
    Change,
    CreateGroup,
    CreateUser,
    DeleteGroup,
    DeleteUser,
    LinkGroup,
    LinkUser,
    MemberRef,
    RelinkGroup,
    RelinkUser,
    RemoveMembers,
    RenameGroup,
    RestoreUser,
    RevokeUser,
    UpdateUser,
    subject,
)
from .. import WritesExternalId
from . import attrs as attrs
from . import wire as wire

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Attempts:
    """Counts HttpClient's retries of one request; a retried write may already have landed."""

    retries: int = 0

    def on_retry(self, attempt: int, reason: str) -> None:
        self.retries += 1

    @property
    def uncertain(self) -> bool:
        return self.retries > 0


class Refused(TargetError):
    """The server cannot do this change at all (Bitwarden email change)."""


class Skip(Exception):
    """The change is deliberately not sent; the message says why."""


class ScimWriter:
    """Executes single changes; shared by the worker threads of one apply."""

    def __init__(self, http: HttpClient, caps: wire.Capabilities, *, member_chunk: int,
                 users_by_ext: Mapping[str, str], groups_by_ext: Mapping[str, str],
                 versions: Mapping[str, str], logins: Mapping[str, str] | None = None,
                 relink: WritesExternalId | None = None,
                 mapping: UserMapping | None = None) -> None:
        self.http = http
        self.caps = caps
        self.mapping = mapping or UserMapping()
        """``[target.mapping]``: the extra attributes written on create and update."""
        self._paths = {r.path.text: r.path for r in self.mapping.rules}
        self._managers: dict[str, str] = {}
        """User external id -> manager external id, for managers whose account was not
        known when the user was written (created later in the same apply)."""
        self.relink = relink
        """Writes relinks some other way than SCIM PATCH (Bitwarden: the Public API member
        and group updates, which every server version honours)."""
        self.member_chunk = member_chunk
        self._lock = threading.Lock()
        self._users = dict(users_by_ext)      # external id -> SCIM id (snapshot + created)
        self._groups = dict(groups_by_ext)
        self._versions = dict(versions)        # SCIM id -> ETag from the snapshot or last write
        self._logins = dict(logins or {})      # SCIM id -> userName from the snapshot

    # ------------------------------------------------------------ entry point

    def run(self, change: Change) -> Outcome:
        """Do one change. TargetError/TransientError become a failed Outcome; AuthError raises."""
        tries = Attempts()
        try:
            ref = self._dispatch(change, tries)
        except Skip as why:
            return Outcome(change, "skipped", str(why), attempts=tries.retries + 1)
        except AuthError:
            raise
        except TargetError as exc:
            if exc.status is not None and exc.status >= 500 and self._landed(change):
                return Outcome(change, "ok", ref=getattr(change, "ref", ""),
                               attempts=tries.retries + 1)
            return Outcome(change, "failed", f"{subject(change)}: {exc}",
                           attempts=tries.retries + 1)
        except TransientError as exc:
            if self._landed(change):
                return Outcome(change, "ok", ref=getattr(change, "ref", ""),
                               attempts=tries.retries + 1)
            return Outcome(change, "failed", f"{subject(change)}: {exc}",
                           attempts=tries.retries + 1)
        except Exception as exc:  # any bug: record it, go on
            if not isinstance(exc, DirconnectorError):
                log.exception("unexpected error applying %s", change.kind)
            return Outcome(change, "failed", f"{subject(change)}: {exc}",
                           attempts=tries.retries + 1)
        return Outcome(change, "ok", ref=ref, attempts=tries.retries + 1)

    def _landed(self, change: Change) -> bool:
        """After an ambiguous failure (5xx, lost answer): does the server show the change?

        A gateway can fail after the server acted; reading the resource back tells the
        journal what really happened. Only single-attribute changes are checked; the
        read-back is tried three times (READ_BACK), as it may meet the same flaky gateway.
        Its own loop: a failed read is any error, a 404 included, not only what
        HttpClient retries; the waiting is HttpClient's Backoff.
        """
        if isinstance(change, RevokeUser | RestoreUser | LinkUser | RelinkUser):
            path, ref = self.caps.users_path, change.ref
        elif isinstance(change, LinkGroup | RenameGroup | RelinkGroup):
            path, ref = self.caps.groups_path, change.ref
        else:
            return False
        waits = self.http.backoff(READ_BACK)
        attempt = 0
        while True:
            attempt += 1
            try:
                body, _ = self._read(path, ref)
                break
            except AuthError:
                raise
            except DirconnectorError:
                if not waits.again(attempt):
                    return False
        if isinstance(change, RevokeUser | RestoreUser):
            return bool(body.get("active", True)) == isinstance(change, RestoreUser)
        if isinstance(change, LinkUser | RelinkUser):
            return str(body.get("externalId") or "") == change.user.external_id
        if isinstance(change, LinkGroup | RelinkGroup):
            return str(body.get("externalId") or "") == change.external_id
        return str(body.get("displayName") or "") == change.name

    def _dispatch(self, change: Change, t: Attempts) -> str:
        users, groups = self.caps.users_path, self.caps.groups_path
        if isinstance(change, CreateUser):
            return self.create_user(change.user, t)
        if isinstance(change, UpdateUser):
            self._check_update(change)
            ops = wire.user_update_ops(change.user, change.fields,
                                       move_login=self._login_is_email(change))
            if self._paths:
                ops += self._attribute_ops(change)
            self.modify(users, change.ref, ops, t)
            return change.ref
        if isinstance(change, LinkUser | RelinkUser):
            if isinstance(change, RelinkUser):
                self.set_user_external_id(change.ref, change.user.external_id, t)
            else:
                self.patch_external_id(users, change.ref, change.user.external_id, t)
            self._remember(self._users, change.user.external_id, change.ref)
            return change.ref
        if isinstance(change, RevokeUser | RestoreUser):
            # RFC 7643 4.1.1 "active"; Bitwarden revokes/restores on it (reference 3.2).
            active = isinstance(change, RestoreUser)
            self.modify(users, change.ref, [wire.replace_op("active", active)], t)
            return change.ref
        if isinstance(change, DeleteUser | DeleteGroup):
            path = users if isinstance(change, DeleteUser) else groups
            # 404: already gone is the outcome we wanted (RFC 7644 3.6).
            self.http.request("DELETE", f"{path}/{_seg(change.ref)}", ok=(200, 204, 404),
                              on_retry=t.on_retry)
            return change.ref
        if isinstance(change, CreateGroup):
            return self.create_group(change, t)
        if isinstance(change, LinkGroup | RelinkGroup):
            if isinstance(change, RelinkGroup):
                self.set_group_external_id(change.ref, change.external_id, t)
            else:
                self.patch_external_id(groups, change.ref, change.external_id, t)
            self._remember(self._groups, change.external_id, change.ref)
            return change.ref
        if isinstance(change, RenameGroup):
            self.modify(groups, change.ref, [wire.replace_op("displayName", change.name)], t)
            return change.ref
        if isinstance(change, AddMembers | RemoveMembers):
            return self.members(change, t)
        raise AssertionError(change)

    def _login_is_email(self, change: UpdateUser) -> bool:
        """Is the account's userName its old email? (read from the snapshot, else the server)"""
        if "email" not in change.fields:
            return False
        old = change.before[change.fields.index("email")].lower()
        with self._lock:
            login = self._logins.get(change.ref)
        if login is None:
            login = str(self._read(self.caps.users_path, change.ref)[0].get("userName") or "")
        return login.lower() == old

    def _check_update(self, change: UpdateUser) -> None:
        if self.caps.flavor != "bitwarden":
            return
        if "email" in change.fields:
            # Reference 3.4: PUT/PATCH never change a Bitwarden member's email.
            old = change.before[change.fields.index("email")]
            raise Refused(
                f"Bitwarden SCIM cannot change an email ({old} -> {change.user.email}); "
                f"change it in the Bitwarden admin console, or remove and re-invite the member")
        raise Skip(f"{subject(change)}: Bitwarden SCIM ignores {', '.join(change.fields)} "
                   f"(PUT/PATCH honour only active and externalId); not sent")

    # ------------------------------------------------------------ creates

    def _attribute_ops(self, change: UpdateUser) -> list[dict[str, Any]]:
        changed = [(self._paths[f], old, value_of(change.user, f))
                   for f, old in zip(change.fields, change.before, strict=True)
                   if f in self._paths]
        # What the account holds for every mapped path: the old value of a changed one,
        # the wanted value of an unchanged one (diff found them equal).
        wanted = dict(change.user.attributes)
        held = {**wanted, **{p.text: old for p, old, _ in changed}}
        ops, complete = attrs.update_ops(changed, self._known_user, held, wanted)
        if not complete:
            self._defer_manager(change.user)
        return ops

    def _known_user(self, external_id: str) -> str:
        """The SCIM id of a user this run knows (read or created); "" if none yet."""
        with self._lock:
            return self._users.get(external_id, "")

    def _defer_manager(self, user: User) -> None:
        boss = value_of(user, MANAGER)
        with self._lock:
            self._managers[user.external_id] = boss

    def user_body(self, user: User) -> dict[str, Any]:
        """The POST body of a user: the core resource plus its mapped attributes; a manager
        whose account is not known yet is set by ``set_pending_managers``."""
        body = wire.user_resource(user)
        if self._paths and user.attributes and not attrs.add_to_body(
                body, user.attributes, self._paths, self._known_user):
            self._defer_manager(user)
        return body

    def set_pending_managers(self) -> list[str]:
        """Write the manager references left out earlier in this apply (RFC 7643 4.3: the
        manager's SCIM id, known now that every create has run); the problems, in words.
        A failure here is planned again by the next run (the server lacks the manager)."""
        with self._lock:
            pending, self._managers = dict(self._managers), {}
        problems = []
        for ext, boss in sorted(pending.items()):
            ref, boss_ref = self._known_user(ext), self._known_user(boss)
            if not ref or not boss_ref:
                problems.append(f"{ext}: manager {boss} has no account; not set")
                continue
            try:
                self.modify(self.caps.users_path, ref, [{
                    "op": "replace", "path": attrs.patch_path(self._paths[MANAGER]),
                    "value": {"value": boss_ref}}], Attempts())
            except (TargetError, TransientError) as exc:
                problems.append(f"{ext}: setting the manager failed: {exc}")
        return problems

    def create_user(self, user: User, t: Attempts, *, uncertain: bool = False) -> str:
        """POST a User; a create that may already have landed is looked up, never duplicated."""
        path = self.caps.users_path
        ref = self._create(path, self.user_body(user), t, uncertain,
                           lambda: self.find(path, "externalId", user.external_id),
                           lambda sure, exc: self.recover_user(user, sure, exc))
        self._remember(self._users, user.external_id, ref)
        return ref

    def recover_user(self, user: User, uncertain: bool, exc: Exception) -> str:
        """After 409: the account holding our externalId is ours; by userName only if uncertain.

        An account with our external id can only be one we (or an earlier run) made.
        A userName match is accepted only when our own POST may have landed before a
        retry (a timeout, a dropped connection) and the account carries no other id.
        """
        found = self.find(self.caps.users_path, "externalId", user.external_id)
        if found is not None:
            return str(found["id"])
        if uncertain:
            found = self.find(self.caps.users_path, "userName", user.login)
            if found is not None and str(found.get("externalId") or "") in ("", user.external_id):
                return str(found["id"])
        raise TargetError(f"userName {user.login} already exists on the server (409) and is not "
                          f"this user's account; link or remove it, then run again",
                          status=409) from exc

    def create_group(self, change: CreateGroup, t: Attempts) -> str:
        path = self.caps.groups_path

        def recover(uncertain: bool, exc: Exception) -> str:
            found = self.find(path, "externalId", change.external_id)
            if found is None and uncertain:
                cand = self.find(path, "displayName", change.name)
                if cand is not None and str(cand.get("externalId") or "") in (
                        "", change.external_id):
                    found = cand
            if found is None:
                raise TargetError(f"a group named {change.name!r} already exists on the server "
                                  f"(409) with another external id", status=409) from exc
            return str(found["id"])

        ref = self._create(path, wire.group_resource(change.external_id, change.name), t, False,
                           lambda: self.find(path, "externalId", change.external_id), recover)
        self._remember(self._groups, change.external_id, ref)
        return ref

    def _create(self, path: str, body: dict[str, Any], t: Attempts, uncertain: bool,
                find_own: Callable[[], dict[str, Any] | None],
                recover: Callable[[bool, Exception], str]) -> str:
        """POST once; after a timeout or dropped connection, look before POSTing again.

        A POST whose answer was lost may have created the object. Servers that enforce
        uniqueness answer the retry with 409 (then ``recover``), but many do not for
        groups (scim2-server does not), so a lost answer is followed by a lookup by
        externalId rather than a blind second POST. That lookup is why this loop is not
        HttpClient's (which would POST again blindly); it waits through the same Backoff.
        """
        waits = self.http.backoff()
        attempt = 0
        while True:
            attempt += 1
            if uncertain:
                found = find_own()
                if found is not None:
                    return str(found["id"])
            try:
                resp = self.http.request(
                    "POST", path, data=json.dumps(body), ok=(200, 201),
                    headers={"Content-Type": wire.SCIM_JSON}, on_retry=t.on_retry,
                    retry_connection_errors=False)
                return wire.id_from(_body(resp), resp.headers.get("Location"))
            except Conflict as exc:
                return recover(uncertain or t.uncertain, exc)
            except TargetError as exc:
                # A 5xx answer to a POST is ambiguous: a gateway may have failed after the
                # server created the object. Look before reporting a failure.
                if exc.status is not None and exc.status >= 500:
                    found = find_own()
                    if found is not None:
                        return str(found["id"])
                raise
            except TransientError:
                if not waits.again(attempt):
                    raise
                t.retries += 1
                uncertain = True

    def find(self, path: str, attribute: str, value: str) -> dict[str, Any] | None:
        """The first resource with ``attribute eq value`` (RFC 7644 3.4.2.2), exact match only."""
        if not value or (attribute == "userName" and self.caps.flavor == "bitwarden"
                         and "@" not in value):
            return None  # Bitwarden answers no result for a userName without @ (ref. 3.2)
        body = self.http.get_json(path, params={"filter": wire.eq_filter(attribute, value)})
        for res in body.get("Resources") or () if isinstance(body, dict) else ():
            got = str(res.get(attribute) or "")
            same = got == value if attribute == "externalId" else got.lower() == value.lower()
            if same and res.get("id"):
                return dict(res)
        return None

    # ------------------------------------------------------------ memberships

    def members(self, change: AddMembers | RemoveMembers, t: Attempts) -> str:
        group_ref = change.group_ref or self.group_ref(change.group_external_id)
        if not group_ref:
            raise TargetError(f"group {change.group_name!r} is not on the server (its create "
                              f"failed?); members not changed")
        refs: list[str] = []
        missing: list[str] = []
        for m in change.members:
            ref = m.ref or self.user_ref(m)
            (refs.append(ref) if ref else missing.append(m.email))
        # RFC 7644 3.5.2: servers cap the operations of one PATCH; send bounded chunks.
        for chunk in wire.chunks(refs, self.member_chunk):
            ops = (wire.add_members_op(chunk) if isinstance(change, AddMembers)
                   else wire.remove_members_ops(chunk))
            self.modify(self.caps.groups_path, group_ref, ops, t)
        if missing:
            raise TargetError(f"{len(missing)} member(s) have no account on the server "
                              f"(their create failed?): {', '.join(missing[:5])}"
                              f"{' …' if len(missing) > 5 else ''}; the others were changed")
        return group_ref

    def user_ref(self, member: MemberRef) -> str:
        with self._lock:
            known = self._users.get(member.external_id)
        if known:
            return known
        found = self.find(self.caps.users_path, "externalId", member.external_id)
        ref = str(found["id"]) if found else ""
        self._remember(self._users, member.external_id, ref)
        return ref

    def group_ref(self, external_id: str) -> str:
        with self._lock:
            known = self._groups.get(external_id)
        if known:
            return known
        found = self.find(self.caps.groups_path, "externalId", external_id)
        ref = str(found["id"]) if found else ""
        self._remember(self._groups, external_id, ref)
        return ref

    def remember_user(self, external_id: str, ref: str) -> None:
        self._remember(self._users, external_id, ref)

    def _remember(self, where: dict[str, str], external_id: str, ref: str) -> None:
        if external_id and ref:
            with self._lock:
                where[external_id] = ref

    # ------------------------------------------------------------ external ids

    def set_user_external_id(self, ref: str, external_id: str,
                             t: Attempts | None = None) -> None:
        """A relink's write, and ``migrate``'s (WritesExternalId): through ``relink`` when
        the target has one (Bitwarden's Public API), else PATCH (``patch_external_id``)."""
        if self.relink is not None:
            self.relink.set_user_external_id(ref, external_id)
        else:
            self.patch_external_id(self.caps.users_path, ref, external_id, t or Attempts())

    def set_group_external_id(self, ref: str, external_id: str,
                              t: Attempts | None = None) -> None:
        """Likewise for a group."""
        if self.relink is not None:
            self.relink.set_group_external_id(ref, external_id)
        else:
            self.patch_external_id(self.caps.groups_path, ref, external_id, t or Attempts())

    def patch_external_id(self, path: str, ref: str, external_id: str, t: Attempts) -> None:
        """Set or clear one resource's externalId (RFC 7643 3.1) by PATCH, or GET + PUT.

        Setting is ``replace`` (RFC 7644 3.5.2.3), clearing is ``remove`` (3.5.2.2); a
        server without PATCH gets the resource back without the attribute (``modify``).
        Bitwarden's PATCH handles only ``replace`` and stores a blank value as null
        (reference 3.2/3.3), so a clear there is ``replace`` with "". Bitwarden honours
        PATCH externalId since PM-19232 (users) and PM-19551 (groups).
        """
        if external_id or self.caps.flavor == "bitwarden":
            op = wire.replace_op("externalId", external_id)
        else:
            op = wire.remove_op("externalId")
        self.modify(path, ref, [op], t)

    # ------------------------------------------------------------ PATCH / PUT with ETags

    def modify(self, path: str, ref: str, ops: Sequence[dict[str, Any]], t: Attempts) -> None:
        """PATCH the ops (or GET + PUT without PATCH), with If-Match and one retry on 412."""
        if not ops:
            return
        for attempt in (1, 2):
            try:
                if self.caps.patch or not self.caps.advertised:
                    resp = self._send("PATCH", f"{path}/{_seg(ref)}", wire.patch_body(ops), t,
                                      ok=(200, 204), version=self._version(ref))
                else:
                    current, version = self._read(path, ref)
                    resp = self._send("PUT", f"{path}/{_seg(ref)}",
                                      wire.apply_patch_locally(current, ops), t,
                                      ok=(200,), version=version)
            except TargetError as exc:
                if exc.status != 412 or attempt == 2:
                    raise
                # RFC 7644 3.14: the resource changed since we read it; read again, once.
                log.info("%s/%s: 412 Precondition Failed; re-reading the version", path, ref)
                self._read(path, ref)
                continue
            self._note_version(ref, resp)
            return

    def _version(self, ref: str) -> str | None:
        if not self.caps.etag:
            return None
        with self._lock:
            return self._versions.get(ref)

    def _read(self, path: str, ref: str) -> tuple[dict[str, Any], str | None]:
        resp = self.http.request("GET", f"{path}/{_seg(ref)}", ok=(200,))
        body = _body(resp)
        if not isinstance(body, dict):
            raise TargetError(f"GET {path}/{ref} did not return a resource")
        self._note_version(ref, resp)
        return body, self._version(ref)

    def _note_version(self, ref: str, resp: Response) -> None:
        if not self.caps.etag:
            return
        version = resp.headers.get("ETag")
        if not version:
            body = _body(resp) if resp.content else None
            meta = body.get("meta") if isinstance(body, dict) else None
            version = meta.get("version") if isinstance(meta, dict) else None
        with self._lock:
            if version:
                self._versions[ref] = str(version)
            else:
                self._versions.pop(ref, None)  # unknown now: send no stale If-Match

    def _send(self, method: str, path: str, body: Any, t: Attempts, *, ok: tuple[int, ...],
              version: str | None = None) -> Response:
        headers = {"Content-Type": wire.SCIM_JSON}
        if version:
            headers["If-Match"] = version
        return self.http.request(method, path, data=json.dumps(body), headers=headers, ok=ok,
                                 on_retry=t.on_retry)


def _body(resp: Response) -> Any:
    try:
        return resp.json() if resp.content else None
    except ValueError:
        return None


def change_key(change: Change) -> str:
    """Changes with the same key touch the same resource and run one after another."""
    if isinstance(change, AddMembers | RemoveMembers):
        return "g:" + (change.group_ref or change.group_external_id)
    if isinstance(change, CreateGroup):
        return "g:" + change.external_id
    if isinstance(change, CreateUser):
        return "u:" + change.user.external_id
    ref: str = change.ref
    groupish = isinstance(change, LinkGroup | RenameGroup | DeleteGroup | RelinkGroup)
    return ("g:" if groupish else "u:") + ref


Emit = Callable[[Outcome], None]


def _seg(ref: str) -> str:
    """A server id as one URL path segment: a '/', '?' or '#' in it must not change the URL."""
    return quote(ref, safe="")
