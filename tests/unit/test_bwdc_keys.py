"""bwdc's keys: dirconnector writes an AD objectGUID exactly as bwdc's bufToGuid does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dirconnector.connectors.ldap.map import guid_text
from tests.emulators.bwdc import buf_to_guid


def test_known_guid_bytes() -> None:
    """The first three fields are little-endian on the wire (MS-DTYP 2.3.4), text lower-case."""
    raw = bytes.fromhex("33221100554477668899aabbccddeeff")
    assert guid_text(raw) == buf_to_guid(raw) == "00112233-4455-6677-8899-aabbccddeeff"


@given(st.binary(min_size=16, max_size=16))
def test_same_text_as_bwdc_for_any_guid(raw: bytes) -> None:
    """For every 16-byte objectGUID both tools store the same external id, byte for byte."""
    assert guid_text(raw).encode() == buf_to_guid(raw).encode()
