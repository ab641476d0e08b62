"""Fixtures shared by the edge tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.edge.stores.leases import FileLeases
from tests.edge.fault_checks import Faults
from tests.support.upstream import Upstream


@pytest.fixture
def faulty() -> Iterator[tuple[Upstream, Faults]]:
    """The test upstream with `Faults` in front: it misbehaves on command."""
    server = Upstream()
    faults = Faults(server.app)
    server.app = faults
    with server:
        yield server, faults


@pytest.fixture
def leases(tmp_path: Path) -> FileLeases:
    """This host's leases (flock): what replicas sharing a state store without Redis use."""
    (tmp_path / "leases").mkdir()
    return FileLeases(tmp_path / "leases")
