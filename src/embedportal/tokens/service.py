"""Minting embed tokens, and sharing them so Power BI sees about one GenerateToken per identity.

A token is keyed by (connection, report, dataset, RLS identity, configured lifetime). While a
minted token has more than the margin (plus a little slack) of life left, every viewer asking
for the same key gets that same token; only then is a new one minted.

The cache is also what stands between a burst of viewers and Power BI when Power BI is slow,
down or throttling:

* one Power BI call per key whatever its outcome: concurrent requests share one mint (a task
  that outlives any one request), and a refusal is remembered for its Retry-After (or a few
  seconds) so every request meanwhile gets the same answer without asking again;
* every wait is bounded (``wait_seconds``): past it the request is answered "unavailable, retry
  after", and the mint goes on so the retry finds its token;
* a still-valid cached token is served while a re-mint fails, to a viewer that has none
  (``allow_stale``); a viewer that has a token keeps it and is told when to retry;
* with ``EMBEDPORTAL_REDIS_URL`` the tokens, refusals and locks are shared by every portal
  instance; a Redis that is gone or hung is left aside for a few seconds at a time (logged once)
  and the process answers from, and mints into, its own cache meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from redis.exceptions import RedisError

from embedportal.db.models import Organization, Report
from embedportal.powerbi import (
    EffectiveIdentity,
    EmbedToken,
    PowerBIAuthError,
    PowerBIBadRequestError,
    PowerBIError,
    PowerBIForbiddenError,
    PowerBINotFoundError,
    PowerBIThrottledError,
    PowerBIUnavailableError,
)
from embedportal.tokens.policy import (
    TokenPolicy,
    entra_min_remaining_seconds,
    keeper_policy,
    share_threshold_seconds,
)

logger = logging.getLogger("embedportal.tokens")

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def policy_of(organization: Organization) -> TokenPolicy:
    return TokenPolicy(
        lifetime_minutes=organization.token_lifetime_minutes,
        margin_minutes=organization.refresh_margin_minutes,
        refresh_every_minutes=organization.refresh_every_minutes or None,
        interaction_min_age_minutes=organization.interaction_min_age_minutes,
    )


@dataclass(frozen=True)
class MintedToken:
    """A token as the cache holds it. ``token`` is a bearer secret: never logged or audited."""

    token: str
    token_id: str
    expiration: datetime
    minted_at: datetime

    @property
    def lifetime_seconds(self) -> float:
        return (self.expiration - self.minted_at).total_seconds()

    def remaining_seconds(self, now: datetime) -> float:
        return (self.expiration - now).total_seconds()

    def __repr__(self) -> str:
        return f"MintedToken(token_id={self.token_id!r}, expiration={self.expiration.isoformat()})"

    def to_json(self) -> str:
        return json.dumps(
            {
                "token": self.token,
                "tokenId": self.token_id,
                "expiration": self.expiration.isoformat(),
                "mintedAt": self.minted_at.isoformat(),
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> MintedToken | None:
        try:
            data = json.loads(raw)
            return cls(
                token=str(data["token"]),
                token_id=str(data["tokenId"]),
                expiration=datetime.fromisoformat(data["expiration"]),
                minted_at=datetime.fromisoformat(data["mintedAt"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class IssuedToken:
    """What the token API answers (``as_json``), plus whether it came from the cache."""

    token: str
    token_id: str
    expiration: datetime
    expires_in: int
    policy: dict[str, Any]
    shared: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "tokenId": self.token_id,
            "expiration": self.expiration.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "expiresIn": self.expires_in,
            "policy": self.policy,
        }


class TokenMinter(Protocol):
    """The part of :class:`embedportal.powerbi.PowerBIClient` the service needs."""

    async def generate_token(
        self,
        *,
        report_ids: Sequence[str],
        dataset_ids: Sequence[str],
        identities: Sequence[EffectiveIdentity] = (),
        lifetime_minutes: int | None = None,
        min_entra_remaining_seconds: float | None = None,
    ) -> EmbedToken: ...


# --- remembered refusals -----------------------------------------------------------------------

_ERROR_KINDS: dict[str, type[PowerBIError]] = {
    cls.__name__: cls
    for cls in (
        PowerBIError,
        PowerBIAuthError,
        PowerBIBadRequestError,
        PowerBIForbiddenError,
        PowerBINotFoundError,
        PowerBIThrottledError,
        PowerBIUnavailableError,
    )
}


@dataclass(frozen=True)
class SharedError:
    """A Power BI refusal for one key, as every request for that key is told until ``until``."""

    kind: str
    message: str
    status: int | None
    code: str | None
    until: datetime

    @classmethod
    def of(cls, error: PowerBIError, *, until: datetime) -> SharedError:
        kind = next(
            (k.__name__ for k in type(error).__mro__ if k.__name__ in _ERROR_KINDS), "PowerBIError"
        )
        return cls(kind, error.message, error.status, error.code, until)

    def exception(self, now: datetime) -> PowerBIError:
        """The error again, its Retry-After counting down to ``until``."""
        kind = _ERROR_KINDS.get(self.kind, PowerBIError)
        return kind(
            self.message,
            status=self.status,
            code=self.code,
            retry_after_seconds=max(1.0, (self.until - now).total_seconds()),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "message": self.message,
                "status": self.status,
                "code": self.code,
                "until": self.until.isoformat(),
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> SharedError | None:
        try:
            data = json.loads(raw)
            return cls(
                kind=str(data["kind"]),
                message=str(data["message"]),
                status=None if data["status"] is None else int(data["status"]),
                code=None if data["code"] is None else str(data["code"]),
                until=datetime.fromisoformat(data["until"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


class TokenWaitTimeoutError(PowerBIUnavailableError):
    """The token was not ready within the request's patience; the mint goes on."""


# --- caches --------------------------------------------------------------------------------------


class TokenCache(Protocol):
    """Where tokens, remembered refusals and (across processes) mint locks live."""

    def peek(self, key: str) -> MintedToken | None:
        """This process's copy, without I/O (a fresh one needs no round trip)."""

    async def get(self, key: str) -> MintedToken | None: ...

    async def put(self, key: str, token: MintedToken, ttl_seconds: float) -> None: ...

    async def get_error(self, key: str) -> SharedError | None: ...

    async def put_error(self, key: str, error: SharedError, ttl_seconds: float) -> None: ...

    async def lock(self, key: str, ttl_seconds: float) -> str | None:
        """An owner id when this process may mint ``key`` now; None while another holds it."""

    async def unlock(self, key: str, owner: str) -> None: ...

    async def aclose(self) -> None: ...


class MemoryTokenCache:
    """The in-process cache. One event loop: the service's single flight needs no lock here."""

    def __init__(self, clock: Clock = _utcnow, *, max_entries: int = 100_000) -> None:
        self._items: dict[str, MintedToken] = {}
        self._errors: dict[str, SharedError] = {}
        self._clock = clock
        self._max_entries = max_entries

    async def get(self, key: str) -> MintedToken | None:
        return self._items.get(key)

    def peek(self, key: str) -> MintedToken | None:
        return self._items.get(key)

    async def put(self, key: str, token: MintedToken, ttl_seconds: float) -> None:
        self.put_now(key, token)

    def put_now(self, key: str, token: MintedToken) -> None:
        if key not in self._items:
            now = self._clock()
            for stale in [k for k, v in self._items.items() if v.expiration <= now]:
                del self._items[stale]
            if len(self._items) >= self._max_entries:
                # Still full of live tokens: the one closest to its end goes (its viewers
                # refresh soon anyway, and a miss costs one mint).
                del self._items[min(self._items, key=lambda k: self._items[k].expiration)]
        self._items[key] = token
        self._errors.pop(key, None)

    async def get_error(self, key: str) -> SharedError | None:
        return self.get_error_now(key)

    def get_error_now(self, key: str) -> SharedError | None:
        error = self._errors.get(key)
        if error is not None and error.until <= self._clock():
            del self._errors[key]
            return None
        return error

    async def put_error(self, key: str, error: SharedError, ttl_seconds: float) -> None:
        self.put_error_now(key, error)

    def put_error_now(self, key: str, error: SharedError) -> None:
        now = self._clock()
        for stale in [k for k, v in self._errors.items() if v.until <= now]:
            del self._errors[stale]
        self._errors[key] = error

    async def lock(self, key: str, ttl_seconds: float) -> str | None:
        return "local"  # the service's in-process single flight already made this the only one

    async def unlock(self, key: str, owner: str) -> None:
        return None

    async def aclose(self) -> None:
        self._items.clear()
        self._errors.clear()


_RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


class RedisUnavailableError(Exception):
    """Redis did not answer in time, or refused; the caller goes on without it."""


class RedisTokenCache:
    """Tokens shared by every portal instance: JSON values with a TTL, a remembered refusal per
    key, and a ``SET NX`` lock per key so only one instance mints while the others wait and then
    read its token (or its refusal).

    Every token is also kept in this process (answered from there while fresh: a cache hit costs
    no Redis round trip). A Redis call that fails or takes longer than ``timeout_seconds`` puts
    Redis aside for ``retry_seconds``; meanwhile the process uses its own cache, as it would
    without Redis. Both the going and the coming back are logged once."""

    DEFAULT_TIMEOUT_SECONDS = 0.5
    DEFAULT_RETRY_SECONDS = 5.0

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "embedportal:tokens",
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        clock: Clock = _utcnow,
    ) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        self._redis: Any = Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            # A pooled connection to a Redis that restarted fails once: try a new one at once.
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )
        self._prefix = prefix
        self._timeout = timeout_seconds
        self._retry_seconds = retry_seconds
        self._down_until: float | None = None
        self.local = MemoryTokenCache(clock)

    @property
    def redis_available(self) -> bool:
        return self._down_until is None or time.monotonic() >= self._down_until

    def _key(self, key: str) -> str:
        return f"{self._prefix}:{key}"

    async def _call(self, operation: Callable[[], Awaitable[Any]]) -> Any:
        if not self.redis_available:
            raise RedisUnavailableError()
        try:
            result = await asyncio.wait_for(operation(), self._timeout)
        except (TimeoutError, OSError, RedisError) as error:
            if self._down_until is None:
                logger.warning(
                    "token cache: Redis unavailable (%s); using this process's cache until it "
                    "is back",
                    type(error).__name__,
                )
            self._down_until = time.monotonic() + self._retry_seconds
            raise RedisUnavailableError() from error
        if self._down_until is not None:
            logger.warning("token cache: Redis is back; tokens are shared again")
            self._down_until = None
        return result

    async def get(self, key: str) -> MintedToken | None:
        local = self.local.peek(key)
        try:
            raw = await self._call(lambda: self._redis.get(self._key(key)))
        except RedisUnavailableError:
            return local
        shared = MintedToken.from_json(raw) if raw is not None else None
        if shared is None:
            return local
        if local is None or shared.expiration > local.expiration:
            self.local.put_now(key, shared)
            return shared
        return local

    def peek(self, key: str) -> MintedToken | None:
        return self.local.peek(key)

    async def put(self, key: str, token: MintedToken, ttl_seconds: float) -> None:
        self.local.put_now(key, token)
        ttl_ms = max(1000, int(ttl_seconds * 1000))
        try:
            await self._call(lambda: self._redis.set(self._key(key), token.to_json(), px=ttl_ms))
            await self._call(lambda: self._redis.delete(self._key(key) + ":error"))
        except RedisUnavailableError:
            pass

    async def get_error(self, key: str) -> SharedError | None:
        try:
            raw = await self._call(lambda: self._redis.get(self._key(key) + ":error"))
        except RedisUnavailableError:
            return self.local.get_error_now(key)
        return SharedError.from_json(raw) if raw is not None else None

    async def put_error(self, key: str, error: SharedError, ttl_seconds: float) -> None:
        self.local.put_error_now(key, error)
        ttl_ms = max(100, int(ttl_seconds * 1000))
        try:
            await self._call(
                lambda: self._redis.set(self._key(key) + ":error", error.to_json(), px=ttl_ms)
            )
        except RedisUnavailableError:
            pass

    async def lock(self, key: str, ttl_seconds: float) -> str | None:
        owner = secrets.token_hex(16)
        try:
            acquired = await self._call(
                lambda: self._redis.set(
                    self._key(key) + ":lock", owner, nx=True, px=int(ttl_seconds * 1000)
                )
            )
        except RedisUnavailableError:
            return "local"  # no fleet to coordinate with: this process mints for itself
        return owner if acquired else None

    async def unlock(self, key: str, owner: str) -> None:
        if owner == "local":
            return
        try:
            await self._call(
                lambda: self._redis.eval(_RELEASE_SCRIPT, 1, self._key(key) + ":lock", owner)
            )
        except RedisUnavailableError:
            pass  # the lock expires by itself

    async def aclose(self) -> None:
        await self._redis.aclose()
        await self.local.aclose()


def create_token_cache(
    redis_url: str | None, *, prefix: str = "embedportal:tokens"
) -> MemoryTokenCache | RedisTokenCache:
    if redis_url:
        return RedisTokenCache(redis_url, prefix=prefix)
    return MemoryTokenCache()


# --- the service ---------------------------------------------------------------------------------


def cache_key(
    *, scope: str, report: Report, identity: EffectiveIdentity | None, lifetime_minutes: int
) -> str:
    """The key two viewers must share to share a token. Hashed: identities stay out of Redis
    key names."""
    if identity is None:
        return _hashed_key(scope, report.id, report.dataset_id, lifetime_minutes, None, ())
    roles = tuple(sorted(identity.roles))
    return _hashed_key(
        scope, report.id, report.dataset_id, lifetime_minutes, identity.username, roles
    )


# Every token request asks for its key: the same few keys over and over.
@functools.lru_cache(maxsize=4096)
def _hashed_key(
    scope: str,
    report_id: str,
    dataset_id: str | None,
    lifetime_minutes: int,
    username: str | None,
    roles: tuple[str, ...],
) -> str:
    parts: list[Any] = [scope, report_id, dataset_id, lifetime_minutes]
    if username is not None:
        parts += [username, list(roles)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


Mint = Callable[[], Awaitable[EmbedToken]]

# A stale token served while a re-mint fails must leave the viewer time to load the report.
STALE_MIN_REMAINING_SECONDS = 60.0
# A refusal is remembered at most this long, whatever Retry-After said.
MAX_ERROR_SECONDS = 600.0
# How often a process waiting for another instance's mint looks for its outcome.
FLEET_POLL_SECONDS = 0.05


class TokenService:
    """Issue tokens for (report, identity), from the cache while fresh, else by one mint."""

    DEFAULT_WAIT_SECONDS = 2.0
    DEFAULT_FIRST_WAIT_SECONDS = 5.0
    DEFAULT_LOCK_SECONDS = 10.0
    DEFAULT_ERROR_SECONDS = 5.0

    def __init__(
        self,
        *,
        cache: TokenCache,
        clock: Clock = _utcnow,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
        first_wait_seconds: float = DEFAULT_FIRST_WAIT_SECONDS,
        lock_seconds: float = DEFAULT_LOCK_SECONDS,
        error_seconds: float = DEFAULT_ERROR_SECONDS,
    ) -> None:
        self.cache = cache
        self._clock = clock
        self.wait_seconds = wait_seconds
        self.first_wait_seconds = first_wait_seconds
        self.lock_seconds = lock_seconds
        self.error_seconds = error_seconds
        self._flights: dict[str, asyncio.Task[tuple[MintedToken, bool]]] = {}

    def _issued(self, minted: MintedToken, policy: TokenPolicy, *, shared: bool) -> IssuedToken:
        remaining = minted.remaining_seconds(self._clock())
        return IssuedToken(
            token=minted.token,
            token_id=minted.token_id,
            expiration=minted.expiration,
            expires_in=max(0, int(remaining)),
            policy=keeper_policy(policy, lifetime_seconds=minted.lifetime_seconds),
            shared=shared,
        )

    def _fresh(self, minted: MintedToken | None, policy: TokenPolicy) -> bool:
        if minted is None:
            return False
        threshold = share_threshold_seconds(policy, minted.lifetime_seconds)
        return minted.remaining_seconds(self._clock()) > threshold

    def _usable(self, minted: MintedToken | None) -> bool:
        return (
            minted is not None
            and minted.remaining_seconds(self._clock()) > STALE_MIN_REMAINING_SECONDS
        )

    async def issue(
        self,
        *,
        minter: TokenMinter,
        scope: str,
        report: Report,
        identity: EffectiveIdentity | None,
        policy: TokenPolicy,
        allow_stale: bool = False,
        already_waited_seconds: float = 0.0,
    ) -> IssuedToken:
        """A token for the report (with the RLS identity when given). Raises PowerBIError
        (TokenWaitTimeoutError when it is not ready in time). ``allow_stale``: the caller has
        no token to show, so a cached one past its sharing threshold but still valid is better
        than a refusal while Power BI cannot mint, and it waits ``first_wait_seconds`` rather
        than ``wait_seconds`` (a caller with a token keeps showing it and just retries).
        ``already_waited_seconds`` (a turn in the gate) comes off that wait: the caller's
        patience is the same however its time was spent."""
        key = cache_key(
            scope=scope, report=report, identity=identity, lifetime_minutes=policy.lifetime_minutes
        )
        cached = self.cache.peek(key)
        if not self._fresh(cached, policy):
            cached = await self.cache.get(key)
        if self._fresh(cached, policy):
            assert cached is not None
            return self._issued(cached, policy, shared=True)
        stale = cached if allow_stale and self._usable(cached) else None
        remembered = await self.cache.get_error(key)
        if remembered is not None and remembered.until > self._clock():
            if stale is not None:
                return self._issued(stale, policy, shared=True)
            raise remembered.exception(self._clock())

        async def mint() -> EmbedToken:
            return await minter.generate_token(
                report_ids=[report.id],
                dataset_ids=[report.dataset_id] if report.dataset_id else [],
                identities=[identity] if identity is not None else [],
                lifetime_minutes=policy.lifetime_minutes,
                min_entra_remaining_seconds=entra_min_remaining_seconds(policy),
            )

        flight = self._flights.get(key)
        started = flight is None
        if flight is None:
            flight = asyncio.create_task(self._fly(key, policy, mint))
            self._flights[key] = flight
            flight.add_done_callback(functools.partial(self._landed, key))
        patience = self.first_wait_seconds if allow_stale else self.wait_seconds
        patience = max(0.0, patience - already_waited_seconds)
        try:
            minted, minted_here = await asyncio.wait_for(asyncio.shield(flight), patience)
        except TimeoutError:
            if stale is not None:
                return self._issued(stale, policy, shared=True)
            raise TokenWaitTimeoutError(
                "the token was not ready in time; it is still being minted",
                retry_after_seconds=max(1.0, min(patience, self.wait_seconds)),
            ) from None
        except PowerBIError:
            if stale is not None:
                return self._issued(stale, policy, shared=True)
            raise
        # Only the request that set off a mint this process made counts as "minted".
        return self._issued(minted, policy, shared=not (started and minted_here))

    def _landed(self, key: str, flight: asyncio.Task[tuple[MintedToken, bool]]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved: every waiter already had its answer

    async def _fly(self, key: str, policy: TokenPolicy, mint: Mint) -> tuple[MintedToken, bool]:
        """One mint for ``key`` across the fleet: take the lock, or wait for the holder's
        outcome (its token or its refusal) until the lock is released or expires."""
        deadline = time.monotonic() + self.lock_seconds
        while True:
            owner = await self.cache.lock(key, self.lock_seconds)
            if owner is not None:
                break
            outcome = await self._outcome(key, policy)
            if outcome is not None:
                return outcome, False
            if time.monotonic() >= deadline:
                # The holder outlived its own lock's expiry: mint without it.
                logger.warning("token lock for %s not released in time; minting", key[:12])
                owner = None
                break
            await asyncio.sleep(FLEET_POLL_SECONDS)
        try:
            # Another instance may have minted between our look and our lock.
            if owner is not None and owner != "local":
                outcome = await self._outcome(key, policy)
                if outcome is not None:
                    return outcome, False
            return await self._mint_and_keep(key, mint), True
        finally:
            if owner is not None:
                await self.cache.unlock(key, owner)

    async def _outcome(self, key: str, policy: TokenPolicy) -> MintedToken | None:
        cached = await self.cache.get(key)
        if self._fresh(cached, policy):
            return cached
        remembered = await self.cache.get_error(key)
        if remembered is not None and remembered.until > self._clock():
            raise remembered.exception(self._clock())
        return None

    async def _mint_and_keep(self, key: str, mint: Mint) -> MintedToken:
        try:
            embed = await mint()
        except PowerBIError as error:
            wait = min(error.retry_after_seconds or self.error_seconds, MAX_ERROR_SECONDS)
            until = self._clock() + timedelta(seconds=wait)
            await self.cache.put_error(key, SharedError.of(error, until=until), wait)
            raise
        minted = MintedToken(
            token=embed.token,
            token_id=embed.token_id,
            expiration=embed.expiration,
            minted_at=self._clock(),
        )
        ttl = minted.remaining_seconds(self._clock())
        if ttl > 0:
            await self.cache.put(key, minted, ttl)
        return minted

    async def aclose(self) -> None:
        for flight in list(self._flights.values()):
            flight.cancel()
        await asyncio.gather(*self._flights.values(), return_exceptions=True)
        await self.cache.aclose()
