"""What every download of raydm (datasets, pretrained weights) shares."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

TIMEOUT_S = 15


@contextmanager
def bounded_wait() -> Iterator[None]:
    """Sockets opened inside give up after ``TIMEOUT_S`` without an answer: an unreachable
    host (an offline machine, a firewalled cluster node) must fail a search, not hang it."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT_S)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
