"""dirconnector: read a directory, read a server, plan the difference, apply it safely."""

__version__ = "0.1.0"
