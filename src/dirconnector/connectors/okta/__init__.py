"""Okta through its Management API (connectors/okta.md)."""

from __future__ import annotations

from .connector import OktaConnector, OktaSettings

__all__ = ["OktaConnector", "OktaSettings"]
