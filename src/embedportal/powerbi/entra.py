"""Client-credentials access tokens from Entra ID, through msal.

An embed token never outlives the Entra token that minted it, so callers say how much life they
need (``min_remaining_seconds``) and get a token with at least that much left whenever Entra can
issue one. msal's own cache would hand back any token with more than five minutes left; this
provider therefore keeps its own record and, when that token is too short-lived, empties msal's
(private, per-provider) token cache before asking again, which makes msal go to Entra.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import msal
from msal.exceptions import MsalServiceError

from embedportal.powerbi._headers import parse_retry_after
from embedportal.powerbi.connection import PowerBIConnection
from embedportal.powerbi.errors import (
    PowerBIAuthError,
    PowerBIError,
    PowerBIProtocolError,
    PowerBIThrottledError,
    PowerBIUnavailableError,
)
from embedportal.powerbi.msal_http import MsalHttpClient, MsalHttpError

logger = logging.getLogger("embedportal.powerbi")

# Hosts msal knows as Microsoft's (instance discovery works against them).
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.usgovcloudapi.net",
        "login-us.microsoftonline.com",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)

# A token younger than this share of its lifetime (capped) is not replaced just because a caller
# wants more life than it has: a new one would not live much longer, and Entra throttles too.
_MIN_AGE_FRACTION = 0.05
_MIN_AGE_CAP_SECONDS = 60.0
# What a call to Entra raises when Entra could not be reached or answered with an unusable error:
# each becomes a PowerBIError through EntraTokenProvider._unreachable.
_UNREACHABLE_ERRORS = (
    httpx.TimeoutException,
    httpx.TransportError,
    MsalHttpError,
    MsalServiceError,
)


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An Entra access token. ``value`` is the bearer secret and never shows in ``repr``."""

    value: str = field(repr=False)
    expires_at_monotonic: float
    expires_at_utc: datetime
    obtained_at_monotonic: float = field(default=0.0, repr=False)

    def remaining_seconds(self, now_monotonic: float | None = None) -> float:
        now = time.monotonic() if now_monotonic is None else now_monotonic
        return self.expires_at_monotonic - now

    @property
    def lifetime_seconds(self) -> float:
        return self.expires_at_monotonic - self.obtained_at_monotonic


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


class EntraTokenProvider:
    """Thread-safe source of app-only (client credentials) tokens for one scope.

    ``scope`` is e.g. ``https://analysis.windows.net/powerbi/api/.default`` (Power BI) or
    ``https://management.azure.com/.default`` (ARM). ``http_transport`` replaces httpx's network
    transport (tests). Call :meth:`close` when done.
    """

    def __init__(
        self,
        connection: PowerBIConnection,
        *,
        scope: str,
        http_transport: httpx.BaseTransport | None = None,
        timeout: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connection = connection
        self._scope = scope
        self._clock = clock
        parts = urlsplit(connection.authority_host)
        host = (parts.hostname or "").lower()
        if parts.scheme == "http":
            self._http = MsalHttpClient(
                http_origin=connection.authority_host, timeout=timeout, transport=http_transport
            )
            self._authority = f"https://{parts.netloc}/{connection.tenant_id}"
        else:
            self._http = MsalHttpClient(timeout=timeout, transport=http_transport)
            self._authority = f"{connection.authority_host}/{connection.tenant_id}"
        self._instance_discovery = host in MICROSOFT_AUTHORITY_HOSTS
        self._lock = threading.Lock()
        self._app: Any = None
        self._current: AccessToken | None = None
        self._closed = False

    @property
    def scope(self) -> str:
        return self._scope

    # -- public API --------------------------------------------------------------------------

    def token(self, min_remaining_seconds: float = 300.0) -> AccessToken:
        """A token with at least ``min_remaining_seconds`` of life left, fetching a new one from
        Entra when the held one has less. (If Entra issues shorter tokens than asked for, the
        freshly issued token is returned as the best available.) Blocking; thread-safe."""
        with self._lock:
            if self._closed:
                raise RuntimeError("EntraTokenProvider is closed")
            current = self._current
            if current is not None and self._good_enough(current, min_remaining_seconds):
                return current
            fresh = self._acquire()
            self._current = fresh
            return fresh

    def peek(self, min_remaining_seconds: float = 300.0) -> AccessToken | None:
        """The held token if it is good enough, without blocking or any network call."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            current = self._current
            if current is not None and self._good_enough(current, min_remaining_seconds):
                return current
            return None
        finally:
            self._lock.release()

    def invalidate(self, token: AccessToken | None = None) -> None:
        """Forget the held token (only if it is ``token``, when given), e.g. after the API
        answered TokenExpired. Concurrent callers that saw the same failure cause one refresh."""
        with self._lock:
            if (
                token is None
                or self._current is token
                or (self._current is not None and self._current.value == token.value)
            ):
                self._current = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._current = None
            self._app = None
            self._http.close()

    def __enter__(self) -> EntraTokenProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _good_enough(self, token: AccessToken, min_remaining: float) -> bool:
        now = self._clock()
        remaining = token.expires_at_monotonic - now
        if remaining >= min_remaining:
            return True
        if remaining <= 0:
            return False
        age = now - token.obtained_at_monotonic
        return age < min(_MIN_AGE_CAP_SECONDS, _MIN_AGE_FRACTION * token.lifetime_seconds)

    def _msal_app(self) -> Any:
        if self._app is None:
            try:
                self._app = msal.ConfidentialClientApplication(
                    self._connection.client_id,
                    client_credential=self._connection.client_secret,
                    authority=self._authority,
                    http_client=self._http,
                    instance_discovery=self._instance_discovery,
                    token_cache=msal.TokenCache(),
                )
            except _UNREACHABLE_ERRORS as error:
                raise self._unreachable("authority discovery", error) from error
            except ValueError as error:
                raise PowerBIAuthError(
                    "Entra authority discovery failed for tenant "
                    f"{self._connection.tenant_id!r}: "
                    f"{_scrub(str(error), self._connection.client_secret)}",
                    status=self._http.last_status,
                ) from error
        return self._app

    def _forget_msal_tokens(self, app: Any) -> None:
        cache = app.token_cache
        for entry in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            cache.remove_at(entry)

    def _acquire(self) -> AccessToken:
        app = self._msal_app()
        self._forget_msal_tokens(app)  # so msal asks Entra instead of answering from its cache
        started = self._clock()
        started_utc = datetime.now(UTC)
        try:
            result = app.acquire_token_for_client(scopes=[self._scope])
        except _UNREACHABLE_ERRORS as error:
            raise self._unreachable("token request", error) from error
        except (ValueError, KeyError, TypeError) as error:
            if self._http.last_status == 429:
                raise self._unreachable("token request", error) from error
            raise PowerBIProtocolError(
                f"Entra's token response could not be read: {type(error).__name__}",
                status=self._http.last_status,
            ) from error
        if not isinstance(result, dict):
            raise PowerBIProtocolError("Entra returned no token response")
        if "access_token" not in result:
            raise self._error_from(result)
        try:
            expires_in = float(result["expires_in"])
        except (KeyError, TypeError, ValueError) as error:
            raise PowerBIProtocolError("Entra's token response has no valid expires_in") from error
        token = AccessToken(
            value=str(result["access_token"]),
            expires_at_monotonic=started + expires_in,
            expires_at_utc=started_utc + timedelta(seconds=expires_in),
            obtained_at_monotonic=started,
        )
        logger.debug(
            "entra token acquired scope=%s expires_in=%.0fs request_id=%s",
            self._scope,
            expires_in,
            self._http.last_headers.get("x-ms-request-id"),
        )
        return token

    def _unreachable(self, what: str, error: BaseException) -> PowerBIError:
        """Map a transport failure or an HTTP error status without a usable body."""
        status = self._http.last_status if not isinstance(error, httpx.TransportError) else None
        headers = self._http.last_headers
        request_id = headers.get("x-ms-request-id") if status is not None else None
        logger.warning(
            "entra %s failed scope=%s status=%s error=%s request_id=%s",
            what,
            self._scope,
            status,
            type(error).__name__,
            request_id,
        )
        if status == 429:
            return PowerBIThrottledError(
                f"Entra throttled the {what}",
                status=status,
                request_id=request_id,
                retry_after_seconds=parse_retry_after(headers.get("retry-after")),
            )
        detail = f"HTTP {status}" if status is not None else type(error).__name__
        return PowerBIUnavailableError(
            f"Entra {what} failed ({detail}) at {self._connection.authority_host}",
            status=status,
            request_id=request_id,
        )

    def _error_from(self, result: dict[str, Any]) -> PowerBIError:
        secret = self._connection.client_secret
        code = str(result.get("error") or "unknown_error")
        description = _scrub(str(result.get("error_description") or ""), secret)
        first_line = description.splitlines()[0] if description else ""
        status = self._http.last_status
        request_id = self._http.last_headers.get("x-ms-request-id")
        message = f"Entra refused the token request: {code}"
        if first_line:
            message += f": {first_line}"
        logger.warning(
            "entra token request failed scope=%s status=%s code=%s request_id=%s",
            self._scope,
            status,
            code,
            request_id,
        )
        if status == 429:
            retry_after = parse_retry_after(self._http.last_headers.get("retry-after"))
            return PowerBIThrottledError(
                message,
                status=status,
                code=code,
                request_id=request_id,
                retry_after_seconds=retry_after,
            )
        if status is not None and status >= 500:
            return PowerBIUnavailableError(message, status=status, code=code, request_id=request_id)
        return PowerBIAuthError(message, status=status, code=code, request_id=request_id)
