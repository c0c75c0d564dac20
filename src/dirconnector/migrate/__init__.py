"""Handing provisioning over to the identity provider's SCIM (connectors/migrate.md)."""

