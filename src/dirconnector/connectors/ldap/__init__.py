"""OpenLDAP, Active Directory and other LDAPv3 servers (connectors/ldap.md)."""

from __future__ import annotations

from .connector import LdapConnector, LdapSettings

__all__ = ["LdapConnector", "LdapSettings"]
