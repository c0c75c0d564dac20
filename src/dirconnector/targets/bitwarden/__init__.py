"""A Bitwarden organization through the Public API (connectors/bitwarden.md)."""

from __future__ import annotations

from .target import BitwardenSettings, BitwardenTarget

__all__ = ["BitwardenSettings", "BitwardenTarget"]
