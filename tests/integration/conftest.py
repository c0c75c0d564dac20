"""Fixtures shared by the integration suites: the artifacts folder, a headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import ARTIFACTS, Browser, chromium
from tests.conftest import watch_artifacts


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """build/test-artifacts (screenshots, pages, messages), searched for secrets at the end."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    watch_artifacts(ARTIFACTS)
    return ARTIFACTS


@pytest.fixture(scope="session")
def browser(artifacts: Path) -> Iterator[Browser]:
    """Headless Chromium from Debian (scripts/test installs it)."""
    if chromium() is None:
        pytest.skip("chromium is not installed (scripts/test installs it as root)")
    b = Browser()
    try:
        yield b
    finally:
        b.close()
