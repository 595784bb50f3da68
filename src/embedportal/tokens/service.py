"""Minting embed tokens, and sharing them so Power BI sees about one GenerateToken per identity.

A token is keyed by (connection, report, dataset, RLS identity, configured lifetime). While a
minted token has more than the margin (plus a little slack) of life left, every viewer asking
for the same key gets that same token; only then is a new one minted. Concurrent requests for
one key wait for one mint (single flight). The cache lives in the process by default, or in
Redis when ``EMBEDPORTAL_REDIS_URL`` is set, so several portal instances share tokens and locks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from embedportal.access.audit import record
from embedportal.db.models import Organization, Report, User
from embedportal.powerbi import EffectiveIdentity, EmbedToken
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


# --- caches --------------------------------------------------------------------------------------


class _KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class TokenCache(Protocol):
    async def get(self, key: str) -> MintedToken | None: ...

    async def put(self, key: str, token: MintedToken, ttl_seconds: float) -> None: ...

    def single_flight(self, key: str) -> Any:
        """An async context manager held while one caller mints for ``key``."""

    async def aclose(self) -> None: ...


class MemoryTokenCache:
    """The in-process cache: a dict and one asyncio lock per key (one event loop)."""

    def __init__(self, clock: Clock = _utcnow) -> None:
        self._items: dict[str, MintedToken] = {}
        self._locks = _KeyedLocks()
        self._clock = clock

    async def get(self, key: str) -> MintedToken | None:
        return self._items.get(key)

    async def put(self, key: str, token: MintedToken, ttl_seconds: float) -> None:
        now = self._clock()
        for stale in [k for k, v in self._items.items() if v.expiration <= now]:
            del self._items[stale]
        self._items[key] = token

    def single_flight(self, key: str) -> Any:
        return self._locks.hold(key)

    async def aclose(self) -> None:
        self._items.clear()


_RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""


class RedisTokenCache:
    """Tokens shared by every portal instance: JSON values with a TTL, and a ``SET NX`` lock per
    key so only one instance mints while the others wait and then read its token."""

    LOCK_SECONDS = 30.0
    POLL_SECONDS = 0.05

    def __init__(self, url: str, *, prefix: str = "embedportal:tokens") -> None:
        from redis.asyncio import Redis

        self._redis: Any = Redis.from_url(url)
        self._prefix = prefix
        self._local = _KeyedLocks()

    def _key(self, key: str) -> str:
        return f"{self._prefix}:{key}"

    async def get(self, key: str) -> MintedToken | None:
        raw = await self._redis.get(self._key(key))
        return MintedToken.from_json(raw) if raw is not None else None

    async def put(self, key: str, token: MintedToken, ttl_seconds: float) -> None:
        ttl_ms = max(1000, int(ttl_seconds * 1000))
        await self._redis.set(self._key(key), token.to_json(), px=ttl_ms)

    @asynccontextmanager
    async def single_flight(self, key: str) -> AsyncIterator[None]:
        # Waiters in this process queue on a local lock, so only one of them polls Redis.
        async with self._local.hold(key):
            lock_key = self._key(key) + ":lock"
            owner = secrets.token_hex(16)
            deadline = time.monotonic() + self.LOCK_SECONDS
            acquired = False
            while True:
                acquired = bool(
                    await self._redis.set(
                        lock_key, owner, nx=True, px=int(self.LOCK_SECONDS * 1000)
                    )
                )
                if acquired or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(self.POLL_SECONDS)
            if not acquired:
                logger.warning("token lock for %s not acquired in time; minting anyway", key[:12])
            try:
                yield
            finally:
                if acquired:
                    await self._redis.eval(_RELEASE_SCRIPT, 1, lock_key, owner)

    async def aclose(self) -> None:
        await self._redis.aclose()


def create_token_cache(redis_url: str | None, *, prefix: str = "embedportal:tokens") -> TokenCache:
    if redis_url:
        return RedisTokenCache(redis_url, prefix=prefix)
    return MemoryTokenCache()


# --- the service ---------------------------------------------------------------------------------


def cache_key(
    *, scope: str, report: Report, identity: EffectiveIdentity | None, lifetime_minutes: int
) -> str:
    """The key two viewers must share to share a token. Hashed: identities stay out of Redis
    key names."""
    parts: list[Any] = [scope, report.id, report.dataset_id, lifetime_minutes]
    if identity is not None:
        parts += [identity.username, sorted(identity.roles)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


class TokenService:
    """Issue tokens for (report, identity), from the cache while fresh, else by one mint."""

    def __init__(self, *, cache: TokenCache, clock: Clock = _utcnow) -> None:
        self.cache = cache
        self._clock = clock

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

    async def issue(
        self,
        *,
        minter: TokenMinter,
        scope: str,
        report: Report,
        identity: EffectiveIdentity | None,
        policy: TokenPolicy,
    ) -> IssuedToken:
        """A token for the report (with the RLS identity when given). Raises PowerBIError."""
        key = cache_key(
            scope=scope, report=report, identity=identity, lifetime_minutes=policy.lifetime_minutes
        )
        cached = await self.cache.get(key)
        if self._fresh(cached, policy):
            assert cached is not None
            return self._issued(cached, policy, shared=True)
        async with self.cache.single_flight(key):
            cached = await self.cache.get(key)
            if self._fresh(cached, policy):
                assert cached is not None
                return self._issued(cached, policy, shared=True)
            embed = await minter.generate_token(
                report_ids=[report.id],
                dataset_ids=[report.dataset_id] if report.dataset_id else [],
                identities=[identity] if identity is not None else [],
                lifetime_minutes=policy.lifetime_minutes,
                min_entra_remaining_seconds=entra_min_remaining_seconds(policy),
            )
            minted = MintedToken(
                token=embed.token,
                token_id=embed.token_id,
                expiration=embed.expiration,
                minted_at=self._clock(),
            )
            ttl = minted.remaining_seconds(self._clock())
            if ttl > 0:
                await self.cache.put(key, minted, ttl)
            return self._issued(minted, policy, shared=False)

    async def aclose(self) -> None:
        await self.cache.aclose()


def record_token_issued(
    *, session: Session, user: User, report: Report, issued: IssuedToken, reason: str
) -> None:
    """Audit one token handed to a viewer: who, which report, which token id (never the token)."""
    record(
        session=session,
        actor=user,
        action="token.issued",
        target_type="report",
        target_id=report.id,
        detail={
            "tokenId": issued.token_id,
            "shared": issued.shared,
            "expiration": issued.as_json()["expiration"],
            "reason": reason,
        },
    )
