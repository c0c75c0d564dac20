"""LDAP string syntaxes, pure: DNs (RFC 4514) and search filters (RFC 4515).

Nothing here talks to a server, so filters are validated when settings load, before
any connection, and DNs from entries and from member values compare equal however
they were spelt (``cn=R&D\\, Europe`` == ``CN=R&D\\2C Europe``).
"""

from __future__ import annotations

import re
import unicodedata

# ---------------------------------------------------------------- DNs (RFC 4514)

# A DN needs the full parser only when it holds escapes, quotes, multi-valued RDNs,
# hex values, legacy ';' separators, spaces around separators, or non-ASCII text;
# everything else normalises to its lower-case spelling (the common case, kept fast).
_NEEDS_PARSE = re.compile(r'[\\"+#;<>\t\n\r\f\v]')
_SPECIAL = frozenset(',+"\\<>;')


class DNError(ValueError):
    """A string that is not a distinguished name."""


def normalize_dn(dn: str) -> str:
    """A canonical spelling of ``dn`` for equality: types and values case-folded,
    escapes decoded and re-encoded one way, multi-valued RDNs sorted.

    Case-insensitive values follow the matching rules of the attributes that name
    entries in practice (cn, uid, ou, dc: caseIgnoreMatch).
    """
    if dn.isascii() and not _NEEDS_PARSE.search(dn) and (" " not in dn or not (
            " ," in dn or ", " in dn or " =" in dn or "= " in dn
            or dn.startswith(" ") or dn.endswith(" "))):
        return dn.lower()
    return ",".join("+".join(sorted(f"{t}={_escape(v)}" for t, v in rdn))
                    for rdn in parse_dn(dn))


def parse_dn(dn: str) -> list[list[tuple[str, str]]]:
    """RDNs of ``dn``, each a list of (lower-case type, decoded case-folded value)."""
    rdns: list[list[tuple[str, str]]] = []
    text = dn.strip()
    if not text:
        return rdns
    i, n = 0, len(text)
    rdn: list[tuple[str, str]] = []
    while i < n:
        eq = text.find("=", i)
        if eq < 0:
            raise DNError(f"not a DN: {dn!r} (no '=' in {text[i:]!r})")
        attr = text[i:eq].strip().lower()
        if not attr or not re.fullmatch(r"[a-z][a-z0-9-]*|(oid\.)?[0-9]+(\.[0-9]+)*", attr):
            raise DNError(f"not a DN: {dn!r} (bad attribute type {attr!r})")
        value, i = _read_value(text, eq + 1, dn)
        rdn.append((attr.removeprefix("oid."), value))
        if i < n and text[i] == "+":
            i += 1
            continue
        rdns.append(rdn)
        rdn = []
        if i < n:
            i += 1  # ',' or the legacy ';' (RFC 4514 section 4 says accept it)
            if i >= n:
                raise DNError(f"not a DN: {dn!r} (ends with a separator)")
    if rdn:
        rdns.append(rdn)
    return rdns


def _read_value(text: str, i: int, dn: str) -> tuple[str, int]:
    n = len(text)
    while i < n and text[i] == " ":
        i += 1
    if i < n and text[i] == "#":  # BER-encoded value: compare its hex spelling
        j = i + 1
        while j < n and text[j] not in ",+;":
            j += 1
        return text[i:j].strip().lower(), j
    if i < n and text[i] == '"':  # RFC 2253 quoted value, still accepted by readers
        out: list[str] = []
        j = i + 1
        while j < n and text[j] != '"':
            if text[j] == "\\" and j + 1 < n:
                j += 1
            out.append(text[j])
            j += 1
        if j >= n:
            raise DNError(f"not a DN: {dn!r} (unclosed quote)")
        j += 1
        while j < n and text[j] == " ":
            j += 1
        return _fold("".join(out)), j
    raw = bytearray()
    last_kept = 0  # length of raw up to the last escaped or non-space character
    j = i
    while j < n:
        ch = text[j]
        if ch in ",+;":
            break
        if ch == "\\":
            if j + 1 >= n:
                raise DNError(f"not a DN: {dn!r} (dangling backslash)")
            pair = text[j + 1:j + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                raw.append(int(pair, 16))
                j += 3
            else:
                raw.extend(text[j + 1].encode())
                j += 2
            last_kept = len(raw)
            continue
        raw.extend(ch.encode())
        if ch != " ":
            last_kept = len(raw)
        j += 1
    try:
        value = bytes(raw[:last_kept]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DNError(f"not a DN: {dn!r} (escaped bytes are not UTF-8)") from exc
    return _fold(value), j


def _fold(value: str) -> str:
    return unicodedata.normalize("NFC", value).casefold()


def _escape(value: str) -> str:
    if value.startswith("#") and re.fullmatch(r"#[0-9a-f]*", value):
        return value
    out = "".join("\\" + c if c in _SPECIAL else c for c in value)
    if out.startswith((" ", "#")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def strip_uid_suffix(value: str) -> str:
    """Drop the optional ``#'0101'B`` of a uniqueMember (Name and Optional UID syntax)."""
    if value.endswith("'B") and "#'" in value:
        return value[: value.rindex("#'")]
    return value


# ------------------------------------------------------------ filters (RFC 4515)


class FilterError(ValueError):
    """A string that is not an LDAP search filter."""


_ATTR = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)(?:;[A-Za-z0-9-]+)*")
_RULE = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*")


def escape_filter_value(value: str) -> str:
    """Escape a value for use inside a filter (RFC 4515 section 3: * ( ) \\ NUL)."""
    return (value.replace("\\", "\\5c").replace("*", "\\2a").replace("(", "\\28")
            .replace(")", "\\29").replace("\x00", "\\00"))


def check_filter(text: str) -> str:
    """Validate ``text`` and return it with outer parentheses; raise FilterError."""
    f = text.strip()
    if not f:
        raise FilterError("empty filter")
    if not f.startswith("("):
        f = f"({f})"
    end = _parse(f, 0)
    if end != len(f):
        raise FilterError(f"unexpected text after position {end}: {f[end:]!r}")
    return f


def _parse(f: str, i: int) -> int:
    """Parse one parenthesised filter starting at ``i``; return the index after it."""
    if i >= len(f) or f[i] != "(":
        raise FilterError(f"expected '(' at position {i}")
    i += 1
    if i < len(f) and f[i] in "&|":
        i += 1  # an empty list is RFC 4526's absolute true / false
        while i < len(f) and f[i] == "(":
            i = _parse(f, i)
    elif i < len(f) and f[i] == "!":
        i = _parse(f, i + 1)
    else:
        i = _item(f, i)
    if i >= len(f) or f[i] != ")":
        raise FilterError(f"missing ')' at position {i}")
    return i + 1


def _item(f: str, i: int) -> int:
    m = _ATTR.match(f, i)
    extensible = False
    if m:
        i = m.end()
        if f.startswith(":dn", i):
            i += 3
            extensible = True
        if f.startswith(":", i) and not f.startswith(":=", i):
            r = _RULE.match(f, i + 1)
            if not r:
                raise FilterError(f"bad matching rule at position {i + 1}")
            i = r.end()
            extensible = True
    elif f.startswith(":", i):  # (:dn:rule:=value) without a type
        if f.startswith(":dn", i):
            i += 3
        r = _RULE.match(f, i + 1) if f.startswith(":", i) else None
        if not r:
            raise FilterError(f"extensible match needs a matching rule at position {i}")
        i = r.end()
        extensible = True
    else:
        raise FilterError(f"expected an attribute name at position {i}: {f[i:i + 20]!r}")
    if extensible:
        if not f.startswith(":=", i):
            raise FilterError(f"expected ':=' at position {i}")
        i += 2
    elif f.startswith(("~=", ">=", "<="), i):
        i += 2
    elif f.startswith("=", i):
        i += 1
    else:
        raise FilterError(f"expected '=', '~=', '>=' or '<=' at position {i}: {f[i:i + 20]!r}")
    return _value(f, i)


def _value(f: str, i: int) -> int:
    n = len(f)
    while i < n and f[i] != ")":
        ch = f[i]
        if ch == "(":
            raise FilterError(f"unescaped '(' in a value at position {i} (write \\28)")
        if ch == "\\":
            pair = f[i + 1:i + 3]
            if len(pair) != 2 or not all(c in "0123456789abcdefABCDEF" for c in pair):
                raise FilterError(f"bad escape at position {i}: use \\ and two hex digits")
            i += 3
            continue
        i += 1
    return i
