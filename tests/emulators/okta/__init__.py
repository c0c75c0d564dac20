"""A faithful local Okta org for the okta connector's tests (see server.py)."""

from .server import OktaEmulator
from .state import OAuthClient, OktaState

__all__ = ["OAuthClient", "OktaEmulator", "OktaState"]
