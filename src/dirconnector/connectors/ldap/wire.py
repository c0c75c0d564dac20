"""The LDAP wire seam: search pages in, (DN, raw attribute values) out.

Two implementations: ``PyLdapWire`` over python-ldap (C libldap, fast; this module)
and ``Ldap3Wire`` over ldap3 (pure Python, portable; wire_ldap3.py). Both return
attribute names as the server spells them (``lowered``/``spelling`` help compare
them case-insensitively, RFC 4512 2.5) and values as raw bytes, translate their
exceptions into SourceError / IncompleteRead once, here at the edge, and never
return a short result: a size, time or admin limit is an IncompleteRead.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from ...errors import IncompleteRead, SourceError
from .settings import LdapSettings

log = logging.getLogger(__name__)

Attrs = dict[str, list[bytes]]
Entry = tuple[str, Attrs]
Scope = Literal["base", "one", "sub"]

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"  # RFC 2696
SHOW_DELETED_OID = "1.2.840.113556.1.4.417"  # MS-ADTS 3.1.1.3.4.1.14 LDAP_SERVER_SHOW_DELETED_OID


@dataclass(frozen=True, slots=True)
class Control:
    """A request control: its OID, criticality and BER value (None for none)."""

    oid: str
    critical: bool = True
    value: bytes | None = None


class Wire(Protocol):
    """One bound connection to one server."""

    url: str
    """The URL this connection reached (after failover)."""

    def search(self, base: str, scope: Scope, filterstr: str, attrs: Sequence[str], *,
               page_size: int, controls: Sequence[Control] = ()) -> Iterator[list[Entry]]:
        """Pages of entries (search references skipped). Raises on any incomplete read."""
        ...

    def close(self) -> None: ...


def lowered(attrs: Mapping[str, list[bytes]]) -> Attrs:
    """``attrs`` with lower-case attribute names."""
    return {k.lower(): v for k, v in attrs.items()}


def spelling(entries: Sequence[tuple[str, Mapping[str, list[bytes]]]]) -> dict[str, str] | None:
    """Lower-case name -> the server's spelling, for one page; None if a name has two.

    A server spells an attribute one way throughout a search, so one look at the
    page's names saves renaming the keys of every entry (a hot loop at 100k users).
    """
    names: set[str] = set().union(*(a.keys() for _, a in entries))
    table = {k.lower(): k for k in names}
    return table if len(table) == len(names) else None


def backend_name(choice: str) -> str:
    """The backend ``choice`` resolves to ("auto": python-ldap when importable)."""
    if choice != "auto":
        return choice
    try:
        import ldap  # noqa: F401  # probing for the optional fast backend
    except ImportError:
        return "ldap3"
    return "python-ldap"


def connect(settings: LdapSettings) -> Wire:
    """Bind to the first URL that answers; a rejected bind is final (no failover)."""
    backend = backend_name(settings.backend)
    if backend == "python-ldap":
        opener: Any = PyLdapWire
    else:
        from .wire_ldap3 import Ldap3Wire
        opener = Ldap3Wire
    if not settings.verify_tls:
        log.warning("ldap source: verify_tls = false; the server's certificate is not checked")
    failures: list[str] = []
    for url in settings.url:
        try:
            wire: Wire = opener(url, settings)
            return wire
        except Unreachable as exc:
            log.warning("ldap source: %s", exc)
            failures.append(str(exc))
    raise SourceError("ldap source: " + "; ".join(failures),
                      hint="check url, the port and the firewall")


class Unreachable(SourceError):
    """This URL could not be reached; the next one may be tried."""


def limit_message(what: str, base: str, filterstr: str) -> str:
    return (f"ldap source: {what} while searching {base!r} with {filterstr}; the read is "
            f"incomplete (raise the account's limit, or lower page_size)")


def host_port(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    tls = parts.scheme.lower() == "ldaps"
    return parts.hostname or "", parts.port or (636 if tls else 389), tls


# StartTLS extended request (RFC 4511 4.14.1), message id 1, as BER.
_START_TLS = b"\x30\x1d\x02\x01\x01\x77\x18\x80\x16" + b"1.3.6.1.4.1.1466.20037"


def diagnose_tls(url: str, settings: LdapSettings) -> str | None:
    """Why a TLS connection failed, when it is the certificate (None otherwise).

    libldap reports a failed handshake as "Can't contact LDAP server"; redoing the
    handshake with Python's ssl module names the real cause for the operator.
    """
    host, port, implicit = host_port(url)
    if not (implicit or settings.start_tls) or not settings.verify_tls:
        return None
    ctx = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    try:
        with socket.create_connection((host, port), timeout=settings.timeout) as sock:
            if not implicit:
                sock.sendall(_START_TLS)
                sock.recv(4096)  # the ExtendedResponse; success or not, try the handshake
            with ctx.wrap_socket(sock, server_hostname=host):
                return None
    except ssl.SSLCertVerificationError as exc:
        return (f"TLS certificate verification failed ({exc.verify_message}); check ca_file "
                "(the CA that signed the server's certificate)")
    except (OSError, ssl.SSLError):
        return None


# ------------------------------------------------------------------ python-ldap


class PyLdapWire:
    """python-ldap: libldap does the BER work in C, so 100k entries read in seconds."""

    def __init__(self, url: str, settings: LdapSettings) -> None:
        import ldap

        self.url = url
        self._ldap = ldap
        self._timeout = settings.timeout
        try:
            conn = ldap.initialize(url, bytes_mode=False)
        except ldap.LDAPError as exc:
            raise SourceError(f"ldap source: {url}: {_describe(exc)}") from exc
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        # AD answers with referrals to other partitions; chasing them would bind
        # anonymously elsewhere. They are skipped instead (Wire.search).
        conn.set_option(ldap.OPT_REFERRALS, 0)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, settings.timeout)
        conn.set_option(ldap.OPT_TIMEOUT, settings.timeout)
        if settings.ca_file is not None:
            conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(settings.ca_file))
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT,
                        ldap.OPT_X_TLS_DEMAND if settings.verify_tls else ldap.OPT_X_TLS_NEVER)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # must come last: applies the TLS options
        self._conn = conn
        bind_dn = settings.bind_dn or ""
        password = settings.password.get_secret_value() if settings.password else ""
        try:
            if settings.start_tls:
                conn.start_tls_s()
            conn.simple_bind_s(bind_dn, password)
        except ldap.INVALID_CREDENTIALS as exc:
            raise SourceError(f"ldap source: {url}: bind as {bind_dn!r} rejected "
                              "(invalid credentials)", hint="check bind_dn and password") from exc
        except (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.TIMEOUT) as exc:
            if isinstance(exc, ldap.TIMEOUT):
                raise Unreachable(f"{url}: no answer within {settings.timeout:g} s") from exc
            tls_problem = diagnose_tls(url, settings)
            if tls_problem:
                raise SourceError(f"ldap source: {url}: {tls_problem}") from exc
            raise Unreachable(f"{url}: {_describe(exc)}") from exc
        except ldap.LDAPError as exc:
            raise SourceError(f"ldap source: {url}: {_describe(exc)}") from exc

    def search(self, base: str, scope: Scope, filterstr: str, attrs: Sequence[str], *,
               page_size: int, controls: Sequence[Control] = ()) -> Iterator[list[Entry]]:
        from ldap.controls import LDAPControl
        from ldap.controls.libldap import SimplePagedResultsControl

        ldap = self._ldap
        scopes = {"base": ldap.SCOPE_BASE, "one": ldap.SCOPE_ONELEVEL, "sub": ldap.SCOPE_SUBTREE}
        extra = [LDAPControl(c.oid, c.critical, c.value) for c in controls]
        paged = SimplePagedResultsControl(True, size=page_size, cookie=b"") if page_size else None
        attrlist = list(attrs) or None

        def send() -> int:
            ctrls = [*extra, paged] if paged is not None else extra
            return int(self._conn.search_ext(base, scopes[scope], filterstr, attrlist,
                                             serverctrls=ctrls or None))

        with self._errors(base, filterstr):
            msgid: int | None = send()
        while msgid is not None:
            with self._errors(base, filterstr):
                # The whole page in one call: libldap collects it in C, where one call
                # per entry cost 10 us each in Python (1.1 s of a 100k-user read). The
                # next page is still requested before this one is handed on (below).
                _, data, _, resp_ctrls = self._conn.result3(msgid, all=1,
                                                            timeout=self._timeout)
                page: list[Entry] = [e for e in data if e[0] is not None]  # no referrals
                msgid = None
                if paged is not None:
                    cookie = next((c.cookie for c in resp_ctrls
                                   if c.controlType == PAGED_RESULTS_OID), None)
                    if cookie is None:
                        raise IncompleteRead(
                            f"ldap source: the server ignored the paged-results control "
                            f"searching {base!r}; set page_size = 0 if it cannot page")
                    if cookie:
                        # Ask for the next page before handing this one on, so the server
                        # builds it while the caller maps this one.
                        paged.cookie = cookie
                        msgid = send()
            yield page

    @contextlib.contextmanager
    def _errors(self, base: str, filterstr: str) -> Iterator[None]:
        """Translate python-ldap's exceptions for one search step."""
        ldap = self._ldap
        try:
            yield
        except (ldap.SIZELIMIT_EXCEEDED, ldap.TIMELIMIT_EXCEEDED,
                ldap.ADMINLIMIT_EXCEEDED) as exc:
            raise IncompleteRead(limit_message(_describe(exc), base, filterstr)) from exc
        except ldap.TIMEOUT as exc:
            raise IncompleteRead(limit_message(f"no answer within {self._timeout:g} s",
                                               base, filterstr)) from exc
        except ldap.NO_SUCH_OBJECT as exc:
            raise SourceError(f"ldap source: base DN {base!r} does not exist") from exc
        except ldap.FILTER_ERROR as exc:
            raise SourceError(f"ldap source: the server rejected the filter {filterstr}") from exc
        except ldap.SERVER_DOWN as exc:
            raise IncompleteRead(f"ldap source: {self.url}: connection lost during a "
                                 f"search of {base!r}: {_describe(exc)}") from exc
        except ldap.LDAPError as exc:
            raise SourceError(f"ldap source: search of {base!r} failed: {_describe(exc)}"
                              ) from exc

    def close(self) -> None:
        with contextlib.suppress(self._ldap.LDAPError):
            self._conn.unbind_s()


def _describe(exc: Exception) -> str:
    """python-ldap packs a dict in args[0]; make one line of it."""
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    desc = str(info.get("desc") or exc.__class__.__name__)
    extra = str(info.get("info") or "")
    if "certificate" in extra.lower() or "certificate" in desc.lower():
        return f"TLS certificate verification failed ({extra or desc}); check ca_file"
    return f"{desc} ({extra})" if extra else desc
