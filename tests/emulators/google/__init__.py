"""A local emulator of the Google Workspace Admin SDK Directory API and its token endpoint."""

from .auth import OAuth, ServiceAccount
from .directory import Directory, Fault
from .server import GoogleEmulator

__all__ = ["Directory", "Fault", "GoogleEmulator", "OAuth", "ServiceAccount"]
