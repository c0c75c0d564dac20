"""DN normalisation (RFC 4514) and filter checks (RFC 4515), without a server."""

from __future__ import annotations

import uuid

import pytest

from dirconnector.connectors.ldap.map import guid_text
from dirconnector.connectors.ldap.syntax import (
    DNError,
    FilterError,
    check_filter,
    escape_filter_value,
    normalize_dn,
    parse_dn,
    strip_uid_suffix,
)


@pytest.mark.parametrize(("a", "b"), [
    ("cn=R&D\\, Europe,ou=Groups,dc=example,dc=com", "CN=R&D\\2C Europe, OU=groups,DC=Example,DC=com"),
    ("cn=R&D\\, Europe,dc=x", 'cn="R&D, Europe",dc=x'),
    ("cn=Zoë Ñ,dc=x", "CN=ZOË Ñ,DC=X"),
    ("cn=Zoë,dc=x", "cn=Zo\\C3\\AB,dc=x"),
    ("cn=a+uid=b,dc=x", "UID=B + CN=A,dc=x"),
    ("cn=a,dc=x", "cn=a;dc=x"),
    ("cn=\\ lead,dc=x", "cn=\\20lead,dc=x"),
    ("cn=a\\2Bb,dc=x", "cn=a\\+b,dc=x"),
])
def test_equal_spellings_normalise_alike(a: str, b: str) -> None:
    """Escaped, quoted, hex, case and spacing variants of one DN compare equal."""
    assert normalize_dn(a) == normalize_dn(b)


@pytest.mark.parametrize(("a", "b"), [
    ("cn=a\\,b,dc=x", "cn=a,cn=b,dc=x"),
    ("cn=a\\+sn=b,dc=x", "cn=a+sn=b,dc=x"),
    ("cn=\\ a,dc=x", "cn=a,dc=x"),
])
def test_different_dns_stay_different(a: str, b: str) -> None:
    """An escaped separator is part of a value, not a separator."""
    assert normalize_dn(a) != normalize_dn(b)


@pytest.mark.parametrize("bad", ["nodn", "cn=a,", "cn=a\\", "=x,dc=y", 'cn="open,dc=x'])
def test_malformed_dns_raise(bad: str) -> None:
    """Strings that are not DNs raise DNError when parsed (settings parse every DN they get)."""
    with pytest.raises(DNError):
        parse_dn(bad)


def test_unique_member_uid_suffix() -> None:
    """The #'...'B optional UID of uniqueMember is dropped."""
    assert strip_uid_suffix("uid=a,dc=x#'0101'B") == "uid=a,dc=x"
    assert strip_uid_suffix("uid=a#b,dc=x") == "uid=a#b,dc=x"


@pytest.mark.parametrize("good", [
    "(uid=a)", "uid=a", "(&(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
    "(|(cn=a*b*)(sn>=x)(sn<=y)(cn~=z))", "(memberOf:1.2.840.113556.1.4.1941:=cn=g,dc=x)",
    "(cn=R&D, Europe)", "(cn=a\\28b\\29)", "(&)", "(cn:dn:=x)",
])
def test_valid_filters(good: str) -> None:
    """Valid RFC 4515 filters pass and come back parenthesised."""
    assert check_filter(good).startswith("(")


@pytest.mark.parametrize("bad", [
    "(uid=a", "(uid=a))", "(&(uid=a)(cn=b)", "(uid=(a))", "(uid=a\\zz)", "(=a)", "(uid a)", "",
    "(uid=a)(cn=b)",
])
def test_invalid_filters(bad: str) -> None:
    """Unbalanced, unescaped or nameless filters raise FilterError."""
    with pytest.raises(FilterError):
        check_filter(bad)


def test_escape_filter_value() -> None:
    """Values put into filters are escaped (RFC 4515 section 3) and then parse."""
    escaped = escape_filter_value("a*(b)\\c\x00")
    assert escaped == "a\\2a\\28b\\29\\5cc\\00"
    check_filter(f"(cn={escaped})")


def test_object_guid_text() -> None:
    """objectGUID bytes become the canonical GUID string (little-endian first fields)."""
    guid = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
    assert guid_text(guid.bytes_le) == "01234567-89ab-cdef-0123-456789abcdef"
