"""Small helpers the benchmark parts share."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def cheap_password_hashing() -> Iterator[None]:
    """Real argon2id at the cheapest parameters, as the test suite does: the benchmarks create
    many users, and signing in is not what they measure."""
    from argon2 import PasswordHasher

    from embedportal.access import passwords

    original = passwords._hasher  # noqa: SLF001 - the test suite's trick, for speed only
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # noqa: SLF001
    try:
        yield
    finally:
        passwords._hasher = original  # noqa: SLF001
