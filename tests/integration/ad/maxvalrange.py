"""A plain-LDAP proxy that gives Samba Active Directory's MaxValRange limit.

Windows AD returns at most MaxValRange (default 1,500) values of a multi-valued
attribute per entry: a plain ``member`` request on a larger group comes back as
``member;range=0-1499`` and the client must ask for ``member;range=1500-*`` and so on
until a range ends in ``*`` (MS-ADTS 3.1.1.3.1.3.3 "Range Retrieval"; the
MaxValRange LDAP policy, MS-ADTS 3.1.1.3.4.6). Samba implements ranged requests
but sends every value of an unranged one, so a connector that never asks for
ranges would pass against bare Samba and lose members on Windows. This proxy
rewrites Samba's SearchResultEntry messages the way Windows AD shapes them, and
counts how often it cut an attribute, so a test can prove the ranged path ran.

Only LDAPMessage framing and SearchResultEntry (RFC 4511 4.5.2) are decoded; every
other message, and the client's requests, pass through byte for byte. Plain LDAP
only (no StartTLS, no SASL sealing): the proxy must see the BER.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading

SEARCH_RESULT_ENTRY = 0x64   # [APPLICATION 4] constructed (RFC 4511 4.5.2)
_RANGE = re.compile(r"^(?P<name>[^;]+)(?:;range=(?P<lo>\d+)-(?P<hi>\d+|\*))?$", re.I)


def _tlv(buf: bytes, pos: int) -> tuple[int, int, int] | None:
    """(tag, value start, value end) of the BER element at ``pos``; None if incomplete."""
    if len(buf) < pos + 2:
        return None
    first = buf[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    else:
        n = first & 0x7F
        if len(buf) < pos + 2 + n:
            return None
        start, length = pos + 2 + n, int.from_bytes(buf[pos + 2:pos + 2 + n], "big")
    if len(buf) < start + length:
        return None
    return buf[pos], start, start + length


def _children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, value start, value end) of each element in buf[start:end]."""
    out = []
    pos = start
    while pos < end:
        tlv = _tlv(buf, pos)
        assert tlv is not None, "truncated BER inside a complete message"
        out.append((tlv[0], pos, tlv[1], tlv[2]))
        pos = tlv[2]
    return out


def _enc(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    size = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + n.to_bytes(size, "big") + value


class MaxValRangeProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``upstream``."""

    def __init__(self, upstream: tuple[str, int], limit: int = 1500,
                 attributes: tuple[str, ...] = ("member",)) -> None:
        self.upstream = upstream
        self.limit = limit
        self.attributes = {a.lower() for a in attributes}
        self.cuts = 0
        """How many attributes this proxy shortened to ``limit`` values."""
        self.ranged_requests = 0
        """How many entries carried a ranged attribute back to the client."""
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _replies(self, server: socket.socket, client: socket.socket) -> None:
        buf = b""
        try:
            while data := server.recv(65536):
                buf += data
                while (tlv := _tlv(buf, 0)) is not None:
                    end = tlv[2]
                    client.sendall(self._rewrite(buf[:end]))
                    buf = buf[end:]
        except OSError:
            pass
        finally:
            for s in (server, client):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _rewrite(self, msg: bytes) -> bytes:
        _, start, end = _tlv(msg, 0) or (0, 0, 0)
        parts = _children(msg, start, end)
        if len(parts) < 2 or parts[1][0] != SEARCH_RESULT_ENTRY:
            return msg
        op_tag, _, op_start, op_end = parts[1]
        name, attrs = _children(msg, op_start, op_end)
        new_attrs = b""
        changed = False
        for _, a_pos, a_start, a_end in _children(msg, attrs[2], attrs[3]):
            (_, _, t_start, t_end), (_, _, v_start, v_end) = _children(msg, a_start, a_end)
            atype = msg[t_start:t_end].decode()
            m = _RANGE.match(atype)
            values = _children(msg, v_start, v_end)
            if m and m["lo"] is not None and m["name"].lower() in self.attributes:
                with self._lock:
                    self.ranged_requests += 1
            if m and m["name"].lower() in self.attributes and len(values) > self.limit:
                lo = int(m["lo"] or 0)
                kept = values[:self.limit]
                atype = f"{m['name']};range={lo}-{lo + self.limit - 1}"
                body = b"".join(msg[p:e] for _, p, _, e in kept)
                new_attrs += _enc(0x30, _enc(0x04, atype.encode()) + _enc(0x31, body))
                changed = True
                with self._lock:
                    self.cuts += 1
            else:
                new_attrs += msg[a_pos:a_end]
        if not changed:
            return msg
        op = _enc(op_tag, msg[name[1]:name[3]] + _enc(0x30, new_attrs))
        rest = b"".join(msg[p:e] for _, p, _, e in parts[2:])   # controls, if any
        return _enc(0x30, msg[parts[0][1]:parts[0][3]] + op + rest)
