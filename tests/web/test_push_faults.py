"""The push hub with Redis down, hung and back: local viewers always hear events, `publish`
never blocks the caller, the loss is logged once, and the hub recovers by itself."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from pathlib import Path

import pytest

from embedportal.web.push import PushEvent, PushHub
from tests.support.redis_server import hung_redis, redis_server


async def _receive(subscription: object, timeout: float) -> PushEvent | None:
    return await subscription.next(timeout=timeout)  # type: ignore[attr-defined,no-any-return]


def _lost_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "embedportal.push" and record.levelno == logging.WARNING
    ]


def test_with_a_hung_redis_publish_returns_at_once_and_viewers_still_hear_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="embedportal.push")

    async def scenario() -> tuple[list[PushEvent | None], bool]:
        with hung_redis() as url:
            hub = PushHub(url, channel=f"hung-{uuid.uuid4().hex}", redis_timeout_seconds=0.3)
            await hub.start()
            try:
                with hub.subscribe(user_id=1) as subscription:
                    returned = threading.Event()

                    def publish_many() -> None:
                        for n in range(20):
                            hub.publish(PushEvent(kind="policy", data={"n": n}))
                        returned.set()

                    # Published from a worker thread, as sync routes do; the loop must go on.
                    await asyncio.to_thread(publish_many)
                    received = [await _receive(subscription, 3.0) for _ in range(20)]
                    return received, returned.is_set()
            finally:
                await hub.stop()

    received, returned = asyncio.run(scenario())
    assert returned
    assert [event.data["n"] if event else None for event in received] == list(range(20))
    # Lost once for publishing, once for the subscription: not once per event.
    assert len(_lost_warnings(caplog)) <= 2


def test_the_event_loop_keeps_running_while_publishing_into_a_hung_redis() -> None:
    async def scenario() -> int:
        with hung_redis() as url:
            hub = PushHub(url, channel=f"hung-{uuid.uuid4().hex}", redis_timeout_seconds=0.5)
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            task = asyncio.create_task(ticker())
            # Published on the loop itself, as an async route would.
            for n in range(5):
                hub.publish(PushEvent(kind="policy", data={"n": n}))
            await asyncio.sleep(0.3)
            task.cancel()
            await hub.stop()
            return ticks

    # Had publish blocked the loop for the Redis timeout, the ticker would not have run.
    assert asyncio.run(scenario()) > 5


def test_redis_stopped_then_restarted_local_delivery_then_fan_out_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="embedportal.push")

    async def crosses(publisher: PushHub, receiver: PushHub, tries: int = 100) -> bool:
        with receiver.subscribe(user_id=7) as subscription:
            for n in range(tries):
                publisher.publish(PushEvent(kind="access", data={"n": n}, user_id=7))
                if await subscription.next(timeout=0.1) is not None:
                    return True
        return False

    async def scenario() -> tuple[bool, PushEvent | None, bool]:
        with redis_server(tmp_path) as server:
            channel = f"restart-{uuid.uuid4().hex}"
            ours = PushHub(
                server.url, channel=channel, redis_timeout_seconds=0.3, max_backoff_seconds=0.5
            )
            theirs = PushHub(
                server.url, channel=channel, redis_timeout_seconds=0.3, max_backoff_seconds=0.5
            )
            await ours.start()
            await theirs.start()
            try:
                before = await crosses(ours, theirs)
                server.stop()
                with ours.subscribe(user_id=7) as subscription:
                    ours.publish(PushEvent(kind="access", data={"during": True}, user_id=7))
                    # A late copy of an event from before (Redis delivers it back to its
                    # publisher too) may come first: wait for this one.
                    during = None
                    deadline = asyncio.get_running_loop().time() + 3.0
                    while during is None or during.data != {"during": True}:
                        left = deadline - asyncio.get_running_loop().time()
                        if left <= 0:
                            break
                        during = await subscription.next(timeout=left)
                server.start()
                # Patient: a busy machine takes a while to restart Redis and reconnect to it.
                after = await crosses(ours, theirs, tries=300)
                return before, during, after
            finally:
                await ours.stop()
                await theirs.stop()

    before, during, after = asyncio.run(scenario())
    assert before
    assert during is not None and during.data == {"during": True}
    assert after
    warnings = _lost_warnings(caplog)
    assert any("restored" in message for message in warnings)
