"""The token API's concurrency gate: a free turn is taken at once, a full gate makes a request
wait at most the queue time and then says when to come back."""

from __future__ import annotations

import asyncio

import pytest

from embedportal.tokens.gate import GateBusyError, TokenGate

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_free_turn_is_taken_even_with_no_queue_time() -> None:
    gate = TokenGate(limit=2, queue_seconds=0)
    async with gate.turn(), gate.turn():
        pass


async def test_a_full_gate_answers_busy_with_a_retry_after() -> None:
    gate = TokenGate(limit=1, queue_seconds=0.01)
    async with gate.turn():
        with pytest.raises(GateBusyError) as busy:
            async with gate.turn():
                pass
    assert busy.value.retry_after_seconds >= 1
    async with gate.turn():  # the turn given back is free again
        pass


async def test_a_waiting_request_gets_the_turn_given_back_within_its_queue_time() -> None:
    gate = TokenGate(limit=1, queue_seconds=5)
    order: list[str] = []

    async def first() -> None:
        async with gate.turn():
            order.append("first")
            await asyncio.sleep(0.05)

    async def second() -> None:
        await asyncio.sleep(0.01)
        async with gate.turn():
            order.append("second")

    await asyncio.gather(first(), second())
    assert order == ["first", "second"]


async def test_the_turn_says_how_long_it_was_waited_for() -> None:
    gate = TokenGate(limit=1, queue_seconds=5)
    waits: list[float] = []

    async def holder() -> None:
        async with gate.turn() as waited:
            waits.append(waited)
            await asyncio.sleep(0.1)

    async def queued() -> None:
        await asyncio.sleep(0.01)
        async with gate.turn() as waited:
            waits.append(waited)

    await asyncio.gather(holder(), queued())
    assert waits[0] == 0.0  # a free turn costs nothing
    assert 0.05 < waits[1] < 1.0
