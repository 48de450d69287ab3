"""Shared fixtures: a real Mosquitto on a free port per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.broker import LocalBroker, mosquitto_binary


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A private Mosquitto (persistence on) for one test."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); .ci/run installs it")
    b = LocalBroker(workdir=tmp_path / "broker").start()
    try:
        yield b
    finally:
        b.stop()
