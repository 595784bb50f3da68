"""The shared token cache when Redis is gone, hung, or comes back; and a dead minter's lock.

Each test runs its own redis-server on a free port (or a port nobody listens on, or a listener
that never answers), so stopping it disturbs nobody else."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from embedportal.tokens.service import RedisTokenCache, TokenService
from tests.support.redis_server import RedisServer, hung_redis, redis_server
from tests.support.servers import free_port
from tests.tokens.test_service import NORTH, POLICY, Clock, FakeMinter, report

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


@pytest.fixture
async def closing() -> AsyncIterator[list[TokenService]]:
    services: list[TokenService] = []
    yield services
    for service in services:
        await service.aclose()


def service_on(
    url: str,
    clock: Clock,
    closing: list[TokenService],
    prefix: str | None = None,
    **options: float,
) -> TokenService:
    cache = RedisTokenCache(
        url,
        prefix=prefix or f"embedportal-test:{uuid.uuid4().hex}",
        timeout_seconds=0.2,
        retry_seconds=options.pop("retry_seconds", 5.0),
        clock=clock,
    )
    service = TokenService(cache=cache, clock=clock, **options)
    closing.append(service)
    return service


async def test_with_nothing_listening_tokens_are_minted_and_shared_in_process(
    clock: Clock, closing: list[TokenService], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="embedportal.tokens")
    service = service_on(f"redis://127.0.0.1:{free_port()}/0", clock, closing)
    minter = FakeMinter(clock)
    first = await service.issue(
        minter=minter, scope="s", report=report(), identity=NORTH, policy=POLICY
    )
    second = await service.issue(
        minter=minter, scope="s", report=report(), identity=NORTH, policy=POLICY
    )
    assert (first.token, second.token) == ("token-1", "token-1")
    assert len(minter.calls) == 1
    unavailable = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(unavailable) == 1  # logged once, not per request


async def test_a_hung_redis_does_not_hang_the_token_request(
    clock: Clock, closing: list[TokenService]
) -> None:
    with hung_redis() as url:
        service = service_on(url, clock, closing, wait_seconds=5)
        minter = FakeMinter(clock)
        issued = await asyncio.wait_for(
            service.issue(minter=minter, scope="s", report=report(), identity=None, policy=POLICY),
            timeout=4,
        )
        assert issued.token == "token-1"
        again = await service.issue(
            minter=minter, scope="s", report=report(), identity=None, policy=POLICY
        )
        assert again.token == "token-1" and len(minter.calls) == 1


async def test_redis_stopped_then_restarted_the_cache_goes_local_then_shared_again(
    clock: Clock, closing: list[TokenService], own_redis: RedisServer
) -> None:
    prefix = f"embedportal-test:{uuid.uuid4().hex}"
    here = service_on(own_redis.url, clock, closing, prefix, retry_seconds=0.2)
    there = service_on(own_redis.url, clock, closing, prefix, retry_seconds=0.2)
    minter = FakeMinter(clock)
    await here.issue(minter=minter, scope="s", report=report("r1"), identity=None, policy=POLICY)
    shared = await there.issue(
        minter=minter, scope="s", report=report("r1"), identity=None, policy=POLICY
    )
    assert shared.token == "token-1" and len(minter.calls) == 1  # shared through Redis

    own_redis.stop()
    down = await here.issue(
        minter=minter, scope="s", report=report("r2"), identity=None, policy=POLICY
    )
    assert down.token == "token-2"  # minted locally while Redis is gone
    assert not here.cache.redis_available  # type: ignore[attr-defined]

    own_redis.start()
    await asyncio.sleep(0.3)  # past the retry pause
    await here.issue(minter=minter, scope="s", report=report("r3"), identity=None, policy=POLICY)
    assert here.cache.redis_available  # type: ignore[attr-defined]
    from_redis = await there.issue(
        minter=minter, scope="s", report=report("r3"), identity=None, policy=POLICY
    )
    assert from_redis.token == "token-3"  # shared again: no fourth mint
    assert len(minter.calls) == 3


async def test_a_dead_minters_lock_holds_the_next_token_only_until_it_expires(
    clock: Clock, closing: list[TokenService], own_redis: RedisServer
) -> None:
    service = service_on(own_redis.url, clock, closing, lock_seconds=1, wait_seconds=5)
    cache = service.cache
    assert isinstance(cache, RedisTokenCache)
    from embedportal.tokens.service import cache_key

    key = cache_key(scope="s", report=report(), identity=None, lifetime_minutes=60)
    # What a minter that died mid-mint leaves behind: its lock, with the lock's expiry.
    assert await cache.lock(key, ttl_seconds=1) is not None
    minter = FakeMinter(clock)
    issued = await service.issue(
        minter=minter, scope="s", report=report(), identity=None, policy=POLICY
    )
    assert issued.token == "token-1" and len(minter.calls) == 1


def test_the_default_lock_expires_well_before_the_viewers_patience() -> None:
    # The keeper's fetch gives up after 30 s; a dead minter must not hold a token that long.
    assert TokenService.DEFAULT_LOCK_SECONDS <= 10
    assert TokenService.DEFAULT_WAIT_SECONDS <= 5
