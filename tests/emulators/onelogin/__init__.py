"""A faithful local OneLogin API for integration tests (see server.py for the sources)."""

from .server import OneLoginEmulator
from .state import Account, Fault

__all__ = ["Account", "Fault", "OneLoginEmulator"]
