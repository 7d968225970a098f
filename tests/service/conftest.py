"""Fixtures shared by the service tests (store, settings, app)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_adapter.service.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh Store on a temporary SQLite file, tables created."""
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    s.create_all()
    yield s
    s.close()
