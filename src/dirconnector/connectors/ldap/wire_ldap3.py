"""The ldap3 implementation of the wire seam (pure Python; the portable default)."""

from __future__ import annotations

import contextlib
import math
import ssl
from collections.abc import Iterator, Sequence
from typing import Any

from ...errors import IncompleteRead, SourceError
from .settings import LdapSettings
from .wire import (
    PAGED_RESULTS_OID,
    Control,
    Entry,
    Scope,
    Unreachable,
    host_port,
    limit_message,
)

DIRSYNC_OID = "1.2.840.113556.1.4.841"  # MS-ADTS 3.1.1.3.4.1.3 LDAP_SERVER_DIRSYNC_OID


class DirSyncRefused(SourceError):
    """The server answered a DirSync search with an error (rights, a bad cookie)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"ldap source: DirSync refused: {text}")
        self.code = code
        """The LDAP result code (RFC 4511 4.1.9; 50 insufficientAccessRights), -1 if none."""


# RFC 4511 4.1.9 result codes this module acts on.
_TIME_LIMIT, _SIZE_LIMIT, _ADMIN_LIMIT = 3, 4, 11
_NO_SUCH_OBJECT, _INVALID_CREDENTIALS = 32, 49


class Ldap3Wire:
    """ldap3 with schema reading off (get_info=NONE) and raw values, to stay lean."""

    def __init__(self, url: str, settings: LdapSettings) -> None:
        import ldap3
        from ldap3.core import exceptions as lx

        self.url = url
        self._lx = lx
        host, port, use_ssl = host_port(url)
        tls = None
        if use_ssl or settings.start_tls:
            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED if settings.verify_tls else ssl.CERT_NONE,
                ca_certs_file=str(settings.ca_file) if settings.ca_file else None)
        server = ldap3.Server(host, port=port, use_ssl=use_ssl, tls=tls, get_info=ldap3.NONE,
                              connect_timeout=settings.timeout)
        bind_dn = settings.bind_dn or None
        password = settings.password.get_secret_value() if settings.password else None
        self._conn = ldap3.Connection(server, user=bind_dn, password=password,
                                      receive_timeout=math.ceil(settings.timeout), read_only=True,
                                      raise_exceptions=False, check_names=False,
                                      auto_referrals=False, return_empty_attributes=False)
        try:
            self._conn.open()
            if settings.start_tls and not self._conn.start_tls():
                raise SourceError(f"ldap source: {url}: StartTLS refused: "
                                  f"{self._conn.result.get('description')}")
            ok = self._conn.bind()
        except lx.LDAPStartTLSError as exc:
            raise SourceError(f"ldap source: {url}: StartTLS failed: {_tls_text(exc)}") from exc
        except lx.LDAPSocketOpenError as exc:
            text = _tls_text(exc)
            if "certificate" in text.lower():
                raise SourceError(f"ldap source: {url}: {text}") from exc
            raise Unreachable(f"{url}: {text}") from exc
        except lx.LDAPSocketReceiveError as exc:
            raise Unreachable(f"{url}: no answer within {settings.timeout:g} s") from exc
        except lx.LDAPException as exc:
            raise Unreachable(f"{url}: {exc}") from exc
        if not ok:
            result = self._conn.result or {}
            if result.get("result") == _INVALID_CREDENTIALS:
                raise SourceError(f"ldap source: {url}: bind as {bind_dn or ''!r} rejected "
                                  "(invalid credentials)", hint="check bind_dn and password")
            raise SourceError(f"ldap source: {url}: bind failed: {result.get('description')} "
                              f"({result.get('message')})")

    def search(self, base: str, scope: Scope, filterstr: str, attrs: Sequence[str], *,
               page_size: int, controls: Sequence[Control] = ()) -> Iterator[list[Entry]]:
        import ldap3

        scopes = {"base": ldap3.BASE, "one": ldap3.LEVEL, "sub": ldap3.SUBTREE}
        ctrls = [(c.oid, c.critical, c.value) for c in controls] or None
        cookie: Any = None
        while True:
            kwargs: dict[str, Any] = {}
            if page_size:
                kwargs = {"paged_size": page_size, "paged_cookie": cookie,
                          "paged_criticality": True}
            try:
                self._conn.search(base, filterstr, search_scope=scopes[scope],
                                  attributes=list(attrs) or ldap3.ALL_ATTRIBUTES,
                                  controls=ctrls, **kwargs)
            except self._lx.LDAPSocketReceiveError as exc:
                raise IncompleteRead(limit_message(f"no answer ({exc})", base, filterstr)
                                     ) from exc
            except self._lx.LDAPInvalidFilterError as exc:
                raise SourceError(f"ldap source: the filter {filterstr} is invalid: {exc}"
                                  ) from exc
            except self._lx.LDAPException as exc:
                raise IncompleteRead(f"ldap source: {self.url}: search of {base!r} failed: "
                                     f"{exc}") from exc
            result = self._conn.result or {}
            code = result.get("result")
            if code in (_SIZE_LIMIT, _TIME_LIMIT, _ADMIN_LIMIT):
                raise IncompleteRead(limit_message(str(result.get("description")), base,
                                                   filterstr))
            if code == _NO_SUCH_OBJECT:
                raise SourceError(f"ldap source: base DN {base!r} does not exist")
            if code != 0:
                raise SourceError(f"ldap source: search of {base!r} failed: "
                                  f"{result.get('description')} ({result.get('message')})")
            yield [(r["dn"], dict(r["raw_attributes"]))
                   for r in self._conn.response or () if r.get("type") == "searchResEntry"]
            if not page_size:
                return
            paged = (result.get("controls") or {}).get(PAGED_RESULTS_OID)
            if paged is None:
                raise IncompleteRead(f"ldap source: the server ignored the paged-results control "
                                     f"searching {base!r}; set page_size = 0 if it cannot page")
            cookie = paged["value"]["cookie"]
            if not cookie:
                return

    def dirsync(self, base: str, filterstr: str, attrs: Sequence[str], cookie: bytes
                ) -> tuple[list[Entry], bytes, bool]:
        """One DirSync round (MS-ADTS 3.1.1.3.4.1.3, ``1.2.840.113556.1.4.841``): the
        objects changed since ``cookie`` (b"": all), the new cookie, and whether the
        server has more. Asked without LDAP_DIRSYNC_OBJECT_SECURITY, so the account
        needs "Replicating Directory Changes"; tombstones come along (show-deleted).

        Raises DirSyncRefused with the server's result when it answers with an error.
        """
        import ldap3
        from ldap3.protocol.microsoft import dir_sync_control, show_deleted_control

        control = dir_sync_control(criticality=True, object_security=False,
                                   ancestors_first=True, public_data_only=False,
                                   incremental_values=True, max_length=2**31 - 1,
                                   cookie=cookie or None)
        try:
            self._conn.search(base, filterstr, search_scope=ldap3.SUBTREE,
                              attributes=list(attrs),
                              controls=[control, show_deleted_control(criticality=False)])
        except self._lx.LDAPException as exc:
            raise IncompleteRead(f"ldap source: {self.url}: DirSync of {base!r} failed: "
                                 f"{exc}") from exc
        result = self._conn.result or {}
        if result.get("result") != 0:
            raise DirSyncRefused(int(result.get("result") or -1),
                                 f"{result.get('description')} ({result.get('message')})")
        value = (result.get("controls") or {}).get(DIRSYNC_OID, {}).get("value")
        if not value:
            raise DirSyncRefused(-1, "the server answered without a DirSync control")
        entries = [(r["dn"], dict(r["raw_attributes"]))
                   for r in self._conn.response or () if r.get("type") == "searchResEntry"]
        return entries, bytes(value["cookie"]), bool(value["more_results"])

    def close(self) -> None:
        with contextlib.suppress(self._lx.LDAPException):
            self._conn.unbind()


def _tls_text(exc: Exception) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return "TLS certificate verification failed; check ca_file"
    return text
