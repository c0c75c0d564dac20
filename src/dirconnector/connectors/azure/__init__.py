"""Microsoft Entra ID through Microsoft Graph (connectors/azure.md)."""

from __future__ import annotations

from .connector import AzureConnector, AzureSettings

__all__ = ["AzureConnector", "AzureSettings"]
