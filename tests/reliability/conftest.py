"""Fixtures of the fault suite (helpers: tests/reliability/faults.py)."""

from __future__ import annotations

import pytest

from autolog.backends.local import LocalStore


@pytest.fixture
def store(store_dir):
    """Opens the test's local store (a fresh reader each call)."""
    def open_store():
        return LocalStore(store_dir)
    return open_store
