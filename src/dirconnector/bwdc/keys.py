"""The external ids Bitwarden Directory Connector (bwdc) stored, per directory type.

A takeover (``[sync] takeover_from = "bwdc"``) must recognise every member and group
bwdc created by the key bwdc computed. Checked against bwdc's source
(bitwarden/directory-connector, libs/services/directory-services/, commit d9afa864)
and shared/reference/bitwarden.md 2.2-2.3; each line names bwdc's code, then ours:

- LDAP and Active Directory (ldap-directory.service.ts ``getExternalId``, l. 300-307):
  the ``objectGUID`` attribute when the entry has one, read as a Buffer
  (``explicitBufferAttributes``, l. 422) and written by ``bufToGuid`` (l. 516-534):
  bytes 0-3, 4-5 and 6-7 reversed, 8-9 and 10-15 as they are, lower-case hex in
  8-4-4-4-12 groups; otherwise the entry's DN (``getReferenceId``: ``entry.dn``,
  l. 312-314), spelt as the server sent it. Users (l. 146) and groups (l. 248) alike.
  Ours: ``connectors.ldap.map.guid_text`` is ``str(uuid.UUID(bytes_le=raw))``, the same text byte
  for byte (tests/unit/test_bwdc_keys.py checks it against bwdc's algorithm on random
  GUIDs), and it is the default id on AD; on other servers the id is entryUUID
  (nsUniqueId, ipaUniqueID), so members keyed on the DN are relinked, the DN compared
  as ``normalize_dn`` spells it (case, spacing, escapes, multi-valued RDN order).
- Microsoft Entra ID (entra-id-directory.service.ts l. 386-387 users, l. 502-503 groups):
  the object ``id``. Ours: the Graph ``id`` (connectors/azure/cache.py), the same string.
- Okta (okta-directory.service.ts l. 111-112 users, l. 145-146 groups): ``id``. Ours:
  ``id`` (okta.py).
- OneLogin (onelogin-directory.service.ts l. 90-91 users, l. 130-131 roles): ``id``,
  a JSON number, which the server stores as its decimal text (its
  PermissiveStringConverter, reference 2.6). Ours: ``str(id)`` (onelogin.py), and
  bwdc's groups are OneLogin roles: ``groups_from = "roles"`` (set by import-bwdc).
- Google Workspace (gsuite-directory.service.ts l. 141-142 users, l. 192-193 groups):
  ``id``. Ours: ``id`` (connectors/google/map.py).

So only LDAP servers without objectGUID (and an id attribute chosen by hand,
``external_id_attribute``) give keys that differ from ours; every other account is
already matched by its external id.
"""

from __future__ import annotations

TOOL = "bwdc"

LDAP_DN = ("the entry DN (objectGUID where an entry has one), where this connector uses "
           "entryUUID")
LDAP_GUID = "objectGUID as GUID text, as this connector does"
SAME_ID = {
    "azure": "the Entra object id, as this connector does",
    "okta": "the Okta id, as this connector does",
    "onelogin": "the OneLogin user and role id, as this connector does",
    "google": "the Google id, as this connector does",
}


def rule(source_type: str) -> str:
    """How bwdc keyed entries of a source this project reads with the same ids."""
    return SAME_ID.get(source_type, "the ids this connector uses")
