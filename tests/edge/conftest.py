"""Fixtures shared by the edge tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
