"""OneLogin through its API v2 (connectors/onelogin.md)."""

from __future__ import annotations

from .connector import OneLoginConnector, OneLoginSettings

__all__ = ["OneLoginConnector", "OneLoginSettings"]
