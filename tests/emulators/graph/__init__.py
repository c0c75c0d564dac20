"""A local Microsoft Graph v1.0 + Entra ID token endpoint emulator (see server.py)."""

from .directory import Directory
from .server import GraphEmulator, Seen

__all__ = ["Directory", "GraphEmulator", "Seen"]
