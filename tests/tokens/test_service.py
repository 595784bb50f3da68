"""The token service: sharing while fresh, one mint per key at a time, in-process and Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from embedportal.db.models import Report
from embedportal.powerbi import (
    EffectiveIdentity,
    EmbedToken,
    PowerBIThrottledError,
    PowerBIUnavailableError,
)
from embedportal.tokens.policy import TokenPolicy
from embedportal.tokens.service import (
    MemoryTokenCache,
    MintedToken,
    RedisTokenCache,
    TokenCache,
    TokenService,
    TokenWaitTimeoutError,
    cache_key,
)

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeMinter:
    """Stands in for PowerBIClient.generate_token, recording every call."""

    def __init__(self, clock: Clock, lifetime_seconds: float = 3600, delay: float = 0.0) -> None:
        self.clock = clock
        self.lifetime_seconds = lifetime_seconds
        self.delay = delay
        self.calls: list[dict[str, object]] = []
        self.fail_with: Exception | None = None

    async def generate_token(
        self,
        *,
        report_ids: Sequence[str],
        dataset_ids: Sequence[str],
        identities: Sequence[EffectiveIdentity] = (),
        lifetime_minutes: int | None = None,
        min_entra_remaining_seconds: float | None = None,
    ) -> EmbedToken:
        self.calls.append(
            {
                "report_ids": list(report_ids),
                "dataset_ids": list(dataset_ids),
                "identities": list(identities),
                "lifetime_minutes": lifetime_minutes,
                "min_entra_remaining_seconds": min_entra_remaining_seconds,
            }
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        number = len(self.calls)
        return EmbedToken(
            token=f"token-{number}",
            token_id=f"id-{number}",
            expiration=self.clock() + timedelta(seconds=self.lifetime_seconds),
        )


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[TokenCache]:
    if request.param == "memory":
        memory = MemoryTokenCache(clock=clock)
        yield memory
        await memory.aclose()
        return
    url = request.getfixturevalue("redis_url")
    shared = RedisTokenCache(url, prefix=f"embedportal-test:{uuid.uuid4().hex}")
    yield shared
    await shared.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def report(report_id: str = "r1", dataset_id: str = "d1") -> Report:
    return Report(
        id=report_id,
        workspace_id="w1",
        dataset_id=dataset_id,
        name="A report",
        embed_url="https://app.powerbi.com/reportEmbed",
    )


POLICY = TokenPolicy(lifetime_minutes=60, margin_minutes=10)
NORTH = EffectiveIdentity("north@example.com", ["Region Manager"], ["d1"])
SOUTH = EffectiveIdentity("south@example.com", ["Region Manager"], ["d1"])


async def test_viewers_of_the_same_report_and_identity_share_one_token(
    cache: TokenCache, clock: Clock
) -> None:
    minter = FakeMinter(clock)
    service = TokenService(cache=cache, clock=clock)
    first = await service.issue(
        minter=minter, scope="s", report=report(), identity=NORTH, policy=POLICY
    )
    clock.advance(60)
    second = await service.issue(
        minter=minter, scope="s", report=report(), identity=NORTH, policy=POLICY
    )
    assert len(minter.calls) == 1
    assert (first.shared, second.shared) == (False, True)
    assert second.token == first.token
    assert first.expires_in == 3600
    assert second.expires_in == 3540  # counted on the server's clock, not re-started
    call = minter.calls[0]
    assert call["identities"] == [NORTH]
    assert call["lifetime_minutes"] == 60
    assert call["min_entra_remaining_seconds"] == 70 * 60


async def test_different_identities_or_reports_get_their_own_tokens(
    cache: TokenCache, clock: Clock
) -> None:
    minter = FakeMinter(clock)
    service = TokenService(cache=cache, clock=clock)
    await service.issue(minter=minter, scope="s", report=report(), identity=NORTH, policy=POLICY)
    await service.issue(minter=minter, scope="s", report=report(), identity=SOUTH, policy=POLICY)
    await service.issue(minter=minter, scope="s", report=report("r2"), identity=None, policy=POLICY)
    await service.issue(
        minter=minter, scope="other", report=report(), identity=NORTH, policy=POLICY
    )
    assert len(minter.calls) == 4
    assert minter.calls[2]["identities"] == []


async def test_a_token_is_no_longer_shared_once_under_the_margin_plus_slack(
    cache: TokenCache, clock: Clock
) -> None:
    minter = FakeMinter(clock)
    service = TokenService(cache=cache, clock=clock)
    await service.issue(minter=minter, scope="s", report=report(), identity=None, policy=POLICY)
    clock.advance(3600 - 661)  # 661 s left: still more than 600 + 60
    await service.issue(minter=minter, scope="s", report=report(), identity=None, policy=POLICY)
    assert len(minter.calls) == 1
    clock.advance(2)  # 659 s left
    fresh = await service.issue(
        minter=minter, scope="s", report=report(), identity=None, policy=POLICY
    )
    assert len(minter.calls) == 2
    assert fresh.token == "token-2" and fresh.expires_in == 3600


async def test_short_tokens_scale_margin_and_policy(cache: TokenCache, clock: Clock) -> None:
    minter = FakeMinter(clock, lifetime_seconds=30)
    service = TokenService(cache=cache, clock=clock)
    issued = await service.issue(
        minter=minter, scope="s", report=report(), identity=None, policy=POLICY
    )
    assert issued.policy["marginSeconds"] == 10
    clock.advance(14)  # 16 s left > 15 (10 + half of 10): shared
    await service.issue(minter=minter, scope="s", report=report(), identity=None, policy=POLICY)
    clock.advance(2)  # 14 s left: a new one
    await service.issue(minter=minter, scope="s", report=report(), identity=None, policy=POLICY)
    assert len(minter.calls) == 2


async def test_concurrent_requests_for_one_key_cause_one_mint(
    cache: TokenCache, clock: Clock
) -> None:
    minter = FakeMinter(clock, delay=0.05)
    service = TokenService(cache=cache, clock=clock)
    results = await asyncio.gather(
        *(
            service.issue(minter=minter, scope="s", report=report(), identity=NORTH, policy=POLICY)
            for _ in range(20)
        )
    )
    assert len(minter.calls) == 1
    assert {result.token for result in results} == {"token-1"}
    assert sum(not result.shared for result in results) == 1


async def test_a_refusal_is_remembered_until_its_retry_after_then_power_bi_is_asked_again(
    cache: TokenCache, clock: Clock
) -> None:
    minter = FakeMinter(clock)
    minter.fail_with = PowerBIThrottledError("slow down", status=429, retry_after_seconds=30)
    service = TokenService(cache=cache, clock=clock)
    with pytest.raises(PowerBIThrottledError):
        await service.issue(minter=minter, scope="s", report=report(), identity=None, policy=POLICY)
    clock.advance(10)
    with pytest.raises(PowerBIThrottledError) as again:
        await service.issue(minter=minter, scope="s", report=report(), identity=None, policy=POLICY)
    assert len(minter.calls) == 1  # told without asking Power BI again
    assert again.value.retry_after_seconds == pytest.approx(20)
    minter.fail_with = None
    clock.advance(21)
    issued = await service.issue(
        minter=minter, scope="s", report=report(), identity=None, policy=POLICY
    )
    assert issued.token == "token-2"


async def test_concurrent_requests_share_one_failed_call_and_its_retry_after(
    cache: TokenCache, clock: Clock
) -> None:
    minter = FakeMinter(clock, delay=0.05)
    minter.fail_with = PowerBIThrottledError("slow down", status=429, retry_after_seconds=42)
    service = TokenService(cache=cache, clock=clock)
    results = await asyncio.gather(
        *(
            service.issue(minter=minter, scope="s", report=report(), identity=None, policy=POLICY)
            for _ in range(20)
        ),
        return_exceptions=True,
    )
    assert len(minter.calls) == 1
    assert all(isinstance(result, PowerBIThrottledError) for result in results)
    assert {getattr(result, "retry_after_seconds", None) for result in results} == {42}


async def test_a_still_valid_token_is_served_to_a_viewer_without_one_while_a_re_mint_fails(
    cache: TokenCache, clock: Clock
) -> None:
    minter = FakeMinter(clock)
    service = TokenService(cache=cache, clock=clock)
    first = await service.issue(
        minter=minter, scope="s", report=report(), identity=None, policy=POLICY
    )
    clock.advance(55 * 60)  # 5 minutes left: past the sharing threshold, still valid
    minter.fail_with = PowerBIUnavailableError("Power BI is down")
    stale = await service.issue(
        minter=minter, scope="s", report=report(), identity=None, policy=POLICY, allow_stale=True
    )
    assert stale.token == first.token and stale.shared
    # A viewer that holds a token keeps it and is told to retry.
    with pytest.raises(PowerBIUnavailableError):
        await service.issue(minter=minter, scope="s", report=report(), identity=None, policy=POLICY)
    assert len(minter.calls) == 2  # the failure was remembered: one call for both


async def test_a_slow_mint_answers_unavailable_in_bounded_time_and_the_retry_finds_its_token(
    cache: TokenCache, clock: Clock
) -> None:
    minter = FakeMinter(clock, delay=0.5)
    service = TokenService(cache=cache, clock=clock, wait_seconds=0.05)
    with pytest.raises(TokenWaitTimeoutError) as waited:
        await service.issue(minter=minter, scope="s", report=report(), identity=None, policy=POLICY)
    assert waited.value.retry_after_seconds is not None
    await asyncio.sleep(0.6)  # the mint went on without the request
    issued = await service.issue(
        minter=minter, scope="s", report=report(), identity=None, policy=POLICY
    )
    assert issued.token == "token-1" and issued.shared
    assert len(minter.calls) == 1


async def test_time_already_spent_queueing_comes_off_the_wait_for_power_bi(
    cache: TokenCache, clock: Clock
) -> None:
    minter = FakeMinter(clock, delay=0.3)
    service = TokenService(cache=cache, clock=clock, wait_seconds=1.0)
    started = asyncio.get_running_loop().time()
    with pytest.raises(TokenWaitTimeoutError) as waited:
        await service.issue(
            minter=minter,
            scope="s",
            report=report(),
            identity=None,
            policy=POLICY,
            already_waited_seconds=0.95,
        )
    assert asyncio.get_running_loop().time() - started < 0.25  # 1.0 - 0.95, not 1.0
    assert waited.value.retry_after_seconds is not None
    assert waited.value.retry_after_seconds >= 1
    await asyncio.sleep(0.4)  # the mint went on without the request; the retry finds it
    issued = await service.issue(
        minter=minter, scope="s", report=report(), identity=None, policy=POLICY
    )
    assert issued.token == "token-1" and len(minter.calls) == 1


def test_the_cache_key_hides_the_identity_and_ignores_role_order() -> None:
    key = cache_key(
        scope="s",
        report=report(),
        identity=EffectiveIdentity("north@example.com", ["b", "a"], ["d1"]),
        lifetime_minutes=60,
    )
    same = cache_key(
        scope="s",
        report=report(),
        identity=EffectiveIdentity("north@example.com", ["a", "b"], ["d1"]),
        lifetime_minutes=60,
    )
    assert key == same
    assert "north" not in key


def test_a_minted_token_round_trips_through_json_and_never_shows_in_repr() -> None:
    minted = MintedToken("secret-token", "id-1", NOW + timedelta(hours=1), NOW)
    assert MintedToken.from_json(minted.to_json()) == minted
    assert "secret-token" not in repr(minted)
    assert MintedToken.from_json("not json") is None


async def test_the_in_process_cache_stays_bounded_dropping_the_token_closest_to_its_end(
    clock: Clock,
) -> None:
    memory = MemoryTokenCache(clock=clock, max_entries=2)
    for n, hours in ((1, 3), (2, 1), (3, 2)):
        token = MintedToken(f"t{n}", f"id{n}", NOW + timedelta(hours=hours), NOW)
        await memory.put(f"k{n}", token, ttl_seconds=hours * 3600)
    assert [memory.peek(k) is not None for k in ("k1", "k2", "k3")] == [True, False, True]
