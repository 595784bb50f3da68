"""Small helpers the benchmark parts share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from embedportal.server import free_loopback_port

# Outside the kernel's ephemeral range, so a parallel suite's outgoing connection cannot take it.
free_port = free_loopback_port


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
