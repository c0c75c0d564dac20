"""Bitwarden Directory Connector: its data.json converted, its keys recognised."""

