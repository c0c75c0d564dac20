"""Any SCIM 2.0 service provider (RFC 7643/7644), Bitwarden's included."""

from __future__ import annotations

from .target import ScimSettings, ScimTarget

__all__ = ["ScimSettings", "ScimTarget"]
