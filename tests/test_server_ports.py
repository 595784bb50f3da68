"""The loopback port picker that tests and benchmarks start servers on."""

from __future__ import annotations

import socket

import pytest

from embedportal import server
from embedportal.server import free_loopback_port


def test_a_picked_port_is_free_and_outside_the_kernels_ephemeral_range() -> None:
    low, high = server._ephemeral_ports()  # noqa: SLF001 - the range the pick must avoid
    for _ in range(20):
        port = free_loopback_port()
        assert not low <= port <= high
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind(("127.0.0.1", port))


def test_a_port_in_use_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    free = free_loopback_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = int(taken.getsockname()[1])
        choices = iter([busy, busy, free])
        monkeypatch.setattr(server.random, "choice", lambda _ports: next(choices))
        assert free_loopback_port() == free


def test_a_high_ephemeral_range_leaves_the_ports_above_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "_ephemeral_ports", lambda: (1_024, 49_999))
    assert free_loopback_port() >= 50_000
