"""The request loop shared by the Power BI and ARM clients: bearer token, retries, error mapping,
logging. Private to this package."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Self, TypedDict
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx

from embedportal.powerbi._headers import parse_retry_after
from embedportal.powerbi.connection import PowerBIConnection
from embedportal.powerbi.entra import AccessToken, EntraTokenProvider
from embedportal.powerbi.errors import (
    PowerBIAuthError,
    PowerBIBadRequestError,
    PowerBIError,
    PowerBIForbiddenError,
    PowerBINotFoundError,
    PowerBIProtocolError,
    PowerBIThrottledError,
    PowerBIUnavailableError,
)

logger = logging.getLogger("embedportal.powerbi")

Sleep = Callable[[float], Awaitable[None]]

# Retry-After longer than this is not waited out inside a call: the caller gets
# PowerBIThrottledError and decides (the token service, e.g., tells the browser when to retry).
DEFAULT_RETRY_AFTER_CAP_SECONDS = 30.0
# When a 429 carries no usable Retry-After.
DEFAULT_THROTTLE_WAIT_SECONDS = 1.0
_BACKOFF_BASE_SECONDS = 0.25
_BACKOFF_CAP_SECONDS = 4.0
_RETRYABLE_5XX = frozenset({500, 502, 503, 504})
_REQUEST_ID_HEADERS = ("requestid", "x-ms-request-id", "x-ms-correlation-request-id")
_MAX_MESSAGE_CHARS = 500
# Error codes meaning "your bearer token has expired": Power BI's, and ARM's.
_EXPIRED_TOKEN_CODES = frozenset({"TokenExpired", "ExpiredAuthenticationToken"})


def request_id_of(response: httpx.Response) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = response.headers.get(name)
        if value:
            return str(value)
    return None


def error_details(response: httpx.Response) -> tuple[str | None, str]:
    """(code, message) from a Power BI / ARM / Entra error body, tolerating anything."""
    code: str | None = None
    message = ""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        body = None
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            raw_code = error.get("code")
            code = str(raw_code) if raw_code else None
            raw_message = error.get("message")
            message = str(raw_message) if raw_message else ""
            pbi = error.get("pbi.error")
            if isinstance(pbi, Mapping):
                if not code and pbi.get("code"):
                    code = str(pbi["code"])
                if not message:
                    details = pbi.get("details")
                    if isinstance(details, list):
                        texts = [
                            str(d.get("detail", {}).get("value", ""))
                            for d in details
                            if isinstance(d, Mapping) and isinstance(d.get("detail"), Mapping)
                        ]
                        message = "; ".join(t for t in texts if t)
        elif isinstance(error, str):  # OAuth style
            code = error
            description = body.get("error_description")
            message = str(description) if description else ""
        elif isinstance(body.get("message"), str):
            message = str(body["message"])
    if not message:
        message = response.reason_phrase or f"HTTP {response.status_code}"
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[:_MAX_MESSAGE_CHARS] + "…"
    return code, message


def error_for(
    response: httpx.Response, *, service: str, what: str, retry_after: float | None = None
) -> PowerBIError:
    code, message = error_details(response)
    status = response.status_code
    request_id = request_id_of(response)
    text = f"{service} {what}: {message}"
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "request_id": request_id,
        "retry_after_seconds": retry_after,
    }
    if status == 400:
        return PowerBIBadRequestError(text, **kwargs)
    if status == 401:
        return PowerBIAuthError(text, **kwargs)
    if status == 403:
        if code in _EXPIRED_TOKEN_CODES:
            return PowerBIAuthError(text, **kwargs)
        return PowerBIForbiddenError(text, **kwargs)
    if status == 404:
        return PowerBINotFoundError(text, **kwargs)
    if status == 429:
        return PowerBIThrottledError(text, **kwargs)
    if status >= 500:
        return PowerBIUnavailableError(text, **kwargs)
    return PowerBIError(text, **kwargs)


def json_body(response: httpx.Response, *, service: str, what: str) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as error:
        raise PowerBIProtocolError(
            f"{service} {what}: the response is not JSON",
            status=response.status_code,
            request_id=request_id_of(response),
        ) from error


# Calls one client has open at once; more wait their turn here. httpx checks every pooled
# connection on each request, so a burst of 256 token misses on 256 connections spent a third of
# the event loop's time in that check; Power BI throttles a flood anyway.
MAX_CALLS_IN_FLIGHT = 16


class ApiCore:
    """An ``httpx.AsyncClient`` plus the bearer token and the retry / error rules."""

    def __init__(
        self,
        *,
        service: str,
        base_url: str,
        token_provider: EntraTokenProvider,
        transport: httpx.AsyncBaseTransport | None,
        timeout: float,
        max_retries: int,
        retry_after_cap_seconds: float,
        sleep: Sleep | None,
        default_min_token_seconds: float,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.service = service
        self.base_url = base_url
        self.tokens = token_provider
        self.max_retries = max_retries
        self.retry_after_cap_seconds = retry_after_cap_seconds
        self.sleep: Sleep = sleep or anyio.sleep
        self.default_min_token_seconds = default_min_token_seconds
        self.http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "embedportal"},
            limits=httpx.Limits(
                max_connections=MAX_CALLS_IN_FLIGHT, max_keepalive_connections=MAX_CALLS_IN_FLIGHT
            ),
        )
        # Made on first use: a semaphore belongs to the loop that first waits on it.
        self._in_flight: asyncio.Semaphore | None = None

    async def aclose(self) -> None:
        await self.http.aclose()

    async def bearer(self, min_remaining_seconds: float) -> AccessToken:
        cached = self.tokens.peek(min_remaining_seconds)
        if cached is not None:
            return cached
        return await anyio.to_thread.run_sync(self.tokens.token, min_remaining_seconds)

    @staticmethod
    def _backoff(attempt: int) -> float:
        delay = min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * (2.0**attempt))
        return delay * random.uniform(0.5, 1.0)

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        idempotent: bool,
        json_payload: Any = None,
        params: Mapping[str, str] | None = None,
        min_token_seconds: float | None = None,
        wait_on_throttle: bool = True,
    ) -> httpx.Response:
        """Send until a 2xx arrives (returned) or the rules say stop (a PowerBIError).
        ``wait_on_throttle=False``: a 429 is raised at once with its Retry-After, for callers
        answering a person (the token API) who must not be kept waiting for it."""
        min_seconds = (
            self.default_min_token_seconds if min_token_seconds is None else min_token_seconds
        )
        retries = 0
        refreshed_token = False
        while True:
            token = await self.bearer(min_seconds)
            if self._in_flight is None:
                self._in_flight = asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)
            try:
                async with self._in_flight:
                    started = time.monotonic()
                    response = await self.http.request(
                        method,
                        url,
                        json=json_payload,
                        params=params,
                        headers={"Authorization": f"Bearer {token.value}"},
                    )
            except (httpx.TimeoutException, httpx.TransportError) as error:
                kind = "timed out" if isinstance(error, httpx.TimeoutException) else "failed"
                logger.warning(
                    "%s %s %s %s: %s (attempt %d)",
                    self.service,
                    method,
                    httpx.URL(url).path,
                    kind,
                    type(error).__name__,
                    retries + 1,
                )
                if idempotent and retries < self.max_retries:
                    await self.sleep(self._backoff(retries))
                    retries += 1
                    continue
                raise PowerBIUnavailableError(
                    f"{self.service} {what}: request {kind} ({type(error).__name__})"
                ) from error
            elapsed_ms = (time.monotonic() - started) * 1000
            request_id = request_id_of(response)
            logger.debug(
                "%s %s %s -> %d request_id=%s %.0fms",
                self.service,
                method,
                response.request.url.path,
                response.status_code,
                request_id,
                elapsed_ms,
            )
            status = response.status_code
            if 200 <= status < 300:
                return response
            await response.aread()
            retry_after = parse_retry_after(response.headers.get("retry-after"))

            if status == 429:
                wait = DEFAULT_THROTTLE_WAIT_SECONDS if retry_after is None else retry_after
                if (
                    wait_on_throttle
                    and wait <= self.retry_after_cap_seconds
                    and retries < self.max_retries
                ):
                    logger.warning(
                        "%s %s %s throttled (429), retrying in %.1fs request_id=%s",
                        self.service,
                        method,
                        response.request.url.path,
                        wait,
                        request_id,
                    )
                    await self.sleep(wait)
                    retries += 1
                    continue
                raise error_for(response, service=self.service, what=what, retry_after=wait)

            if status in (401, 403) and not refreshed_token:
                code, _ = error_details(response)
                if code in _EXPIRED_TOKEN_CODES:
                    logger.info(
                        "%s %s %s: access token expired, refreshing it once request_id=%s",
                        self.service,
                        method,
                        response.request.url.path,
                        request_id,
                    )
                    self.tokens.invalidate(token)
                    refreshed_token = True
                    continue

            if status in _RETRYABLE_5XX and idempotent and retries < self.max_retries:
                wait = self._backoff(retries)
                if retry_after is not None and retry_after <= self.retry_after_cap_seconds:
                    wait = max(wait, retry_after)
                logger.warning(
                    "%s %s %s -> %d, retrying in %.2fs request_id=%s",
                    self.service,
                    method,
                    response.request.url.path,
                    status,
                    wait,
                    request_id,
                )
                await self.sleep(wait)
                retries += 1
                continue

            failure = error_for(response, service=self.service, what=what, retry_after=retry_after)
            log = logger.warning if status >= 500 or status in (401, 403) else logger.info
            log(
                "%s %s %s failed: %d code=%s request_id=%s",
                self.service,
                method,
                response.request.url.path,
                status,
                failure.code,
                request_id,
            )
            raise failure


class ClientOptions(TypedDict, total=False):
    """How a client reaches its service; each is optional (the defaults of ServiceClient).

    ``transport`` replaces httpx's network transport for the service's calls (tests);
    ``entra_transport`` does the same for the token calls; ``token_provider`` shares an
    existing provider (it is then not closed by ``aclose``). ``sleep`` is what the client
    awaits between retries (tests pass a fake).
    """

    transport: httpx.AsyncBaseTransport | None
    timeout: float
    max_retries: int
    token_provider: EntraTokenProvider | None
    entra_transport: httpx.BaseTransport | None
    retry_after_cap_seconds: float
    sleep: Sleep | None


class ServiceClient:
    """What the Power BI and ARM clients share: a token for the service's scope, the request
    loop against its base URL, and closing both (as ``async with`` does). A subclass names its
    service, the token scope and how long a token must still live for a plain call."""

    service: ClassVar[str]
    scope: ClassVar[str]
    default_min_token_seconds: ClassVar[float]

    def __init__(
        self,
        connection: PowerBIConnection,
        *,
        base_url: str,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 15.0,
        max_retries: int = 3,
        token_provider: EntraTokenProvider | None = None,
        entra_transport: httpx.BaseTransport | None = None,
        retry_after_cap_seconds: float = DEFAULT_RETRY_AFTER_CAP_SECONDS,
        sleep: Sleep | None = None,
    ) -> None:
        self.connection = connection
        self._owns_provider = token_provider is None
        self.tokens = token_provider or EntraTokenProvider(
            connection, scope=self.scope, http_transport=entra_transport, timeout=timeout
        )
        self._core = ApiCore(
            service=self.service,
            base_url=base_url,
            token_provider=self.tokens,
            transport=transport,
            timeout=timeout,
            max_retries=max_retries,
            retry_after_cap_seconds=retry_after_cap_seconds,
            sleep=sleep,
            default_min_token_seconds=self.default_min_token_seconds,
        )
        # Links the service hands back (next pages, operations) must stay on this host.
        origin = urlsplit(base_url)
        self._origin = (origin.scheme, origin.netloc)

    async def aclose(self) -> None:
        await self._core.aclose()
        if self._owns_provider:
            # close() waits for a token request in flight; keep the event loop free meanwhile.
            await anyio.to_thread.run_sync(self.tokens.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
