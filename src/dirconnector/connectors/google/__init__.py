"""Google Workspace through the Admin SDK Directory API (connectors/google.md)."""

from __future__ import annotations

from .connector import GoogleConnector, GoogleSettings

__all__ = ["GoogleConnector", "GoogleSettings"]
