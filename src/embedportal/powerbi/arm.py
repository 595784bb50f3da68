"""Async client for one Power BI Embedded capacity in Azure Resource Manager
(``Microsoft.PowerBIDedicated/capacities``, api-version 2021-01-01).

Suspend, resume and SKU changes are long-running operations: ARM answers 202 with a ``Location``
(or ``Azure-AsyncOperation``) URL and a ``Retry-After``; :class:`CapacityClient` polls until the
operation is over and then returns the capacity as it now is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import anyio.to_thread
import httpx

from embedportal.powerbi._headers import parse_retry_after
from embedportal.powerbi._http import (
    DEFAULT_RETRY_AFTER_CAP_SECONDS,
    ApiCore,
    Sleep,
    error_details,
    json_body,
    request_id_of,
)
from embedportal.powerbi.connection import ARM_SCOPE, PowerBIConnection
from embedportal.powerbi.entra import EntraTokenProvider
from embedportal.powerbi.errors import (
    PowerBIError,
    PowerBIProtocolError,
    PowerBIUnavailableError,
)
from embedportal.powerbi.models import CapacityInfo

logger = logging.getLogger("embedportal.powerbi")

SERVICE = "Azure Resource Manager"
API_VERSION = "2021-01-01"
DEFAULT_MIN_TOKEN_SECONDS = 120.0
TRANSITIONAL_STATES = frozenset(
    {
        "Provisioning",
        "Updating",
        "Suspending",
        "Pausing",
        "Resuming",
        "Preparing",
        "Scaling",
        "Deleting",
    }
)
_ASYNC_TERMINAL = {"succeeded", "failed", "canceled", "cancelled"}


class CapacityClient:
    """``async with CapacityClient(connection) as capacity: await capacity.resume()``.

    The connection must carry ``subscription_id``, ``resource_group`` and ``capacity_name``.
    Long-running operations are polled honouring ``Retry-After`` (at most
    ``poll_interval_cap_seconds`` between polls, ``default_poll_seconds`` when the server says
    nothing) for up to ``operation_timeout_seconds``. ``sleep`` and ``clock`` are injectable.
    """

    def __init__(
        self,
        connection: PowerBIConnection,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 15.0,
        max_retries: int = 3,
        token_provider: EntraTokenProvider | None = None,
        entra_transport: httpx.BaseTransport | None = None,
        retry_after_cap_seconds: float = DEFAULT_RETRY_AFTER_CAP_SECONDS,
        sleep: Sleep | None = None,
        clock: Callable[[], float] = time.monotonic,
        default_poll_seconds: float = 5.0,
        poll_interval_cap_seconds: float = 30.0,
        operation_timeout_seconds: float = 900.0,
    ) -> None:
        if not connection.has_capacity:
            raise ValueError(
                "CapacityClient needs the connection's subscription_id, resource_group and "
                "capacity_name"
            )
        assert connection.subscription_id and connection.resource_group
        assert connection.capacity_name
        self.connection = connection
        self._owns_provider = token_provider is None
        self.tokens = token_provider or EntraTokenProvider(
            connection, scope=ARM_SCOPE, http_transport=entra_transport, timeout=timeout
        )
        self._core = ApiCore(
            service=SERVICE,
            base_url=connection.arm_url,
            token_provider=self.tokens,
            transport=transport,
            timeout=timeout,
            max_retries=max_retries,
            retry_after_cap_seconds=retry_after_cap_seconds,
            sleep=sleep,
            default_min_token_seconds=DEFAULT_MIN_TOKEN_SECONDS,
        )
        self._clock = clock
        self.default_poll_seconds = default_poll_seconds
        self.poll_interval_cap_seconds = poll_interval_cap_seconds
        self.operation_timeout_seconds = operation_timeout_seconds
        self.path = (
            f"/subscriptions/{quote(connection.subscription_id, safe='')}"
            f"/resourceGroups/{quote(connection.resource_group, safe='')}"
            "/providers/Microsoft.PowerBIDedicated/capacities/"
            f"{quote(connection.capacity_name, safe='')}"
        )
        origin = urlsplit(connection.arm_url)
        self._origin = (origin.scheme, origin.netloc)

    async def aclose(self) -> None:
        await self._core.aclose()
        if self._owns_provider:
            # close() waits for a token request in flight; keep the event loop free meanwhile.
            await anyio.to_thread.run_sync(self.tokens.close)

    async def __aenter__(self) -> CapacityClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def name(self) -> str:
        return self.connection.capacity_name or ""

    # -- operations --------------------------------------------------------------------------

    async def get(self) -> CapacityInfo:
        """The capacity's state and SKU (``Capacities_GetDetails``)."""
        what = "get capacity"
        response = await self._core.request(
            "GET", self.path, what=what, idempotent=True, params={"api-version": API_VERSION}
        )
        return CapacityInfo.from_api(json_body(response, service=SERVICE, what=what))

    async def suspend(self, wait: bool = True) -> CapacityInfo:
        """Pause the capacity (billing stops). With ``wait``, return once it is paused."""
        return await self._operation("POST", "/suspend", "suspend capacity", None, wait)

    async def resume(self, wait: bool = True) -> CapacityInfo:
        """Start the capacity (billing starts). With ``wait``, return once it runs."""
        return await self._operation("POST", "/resume", "resume capacity", None, wait)

    async def update_sku(
        self, sku_name: str, tier: str = "PBIE_Azure", wait: bool = True
    ) -> CapacityInfo:
        """Scale the capacity to ``sku_name`` (e.g. ``A2``). Allowed while paused."""
        if not sku_name:
            raise ValueError("sku_name must not be empty")
        body = {"sku": {"name": sku_name, "tier": tier}}
        return await self._operation("PATCH", "", f"change capacity SKU to {sku_name}", body, wait)

    # -- long-running operations -------------------------------------------------------------

    async def _operation(
        self, method: str, suffix: str, what: str, body: Any, wait: bool
    ) -> CapacityInfo:
        started = self._clock()
        response = await self._core.request(
            method,
            self.path + suffix,
            what=what,
            idempotent=False,
            json_payload=body,
            params={"api-version": API_VERSION},
        )
        logger.info(
            "capacity %s: %s accepted (%d) request_id=%s",
            self.name,
            what,
            response.status_code,
            request_id_of(response),
        )
        if not wait:
            return await self.get()
        deadline = started + self.operation_timeout_seconds
        await self._follow(response, what, deadline)
        info = await self.get()
        while info.state in TRANSITIONAL_STATES:
            await self._pause_before_poll(None, what, deadline)
            info = await self.get()
        if info.state == "Failed":
            raise PowerBIError(
                f"{SERVICE} {what}: the capacity ended in state Failed "
                f"(provisioningState {info.provisioning_state or 'unknown'})",
                code="Failed",
            )
        logger.info(
            "capacity %s: %s done state=%s sku=%s after %.1fs",
            self.name,
            what,
            info.state,
            info.sku_name,
            self._clock() - started,
        )
        return info

    def _poll_url(self, value: str, what: str) -> str:
        parts = urlsplit(value)
        if not parts.scheme or not parts.netloc:
            return value  # relative: resolved against arm_url
        if (parts.scheme.lower(), parts.netloc.lower()) != (
            self._origin[0].lower(),
            self._origin[1].lower(),
        ):
            # Never send the ARM token to a host other than the configured ARM endpoint.
            raise PowerBIProtocolError(
                f"{SERVICE} {what}: the operation is tracked on another host ({parts.netloc})"
            )
        return value

    async def _pause_before_poll(
        self, response: httpx.Response | None, what: str, deadline: float
    ) -> None:
        if self._clock() >= deadline:
            raise PowerBIUnavailableError(
                f"{SERVICE} {what}: not finished after {self.operation_timeout_seconds:g}s"
            )
        wait = None
        if response is not None:
            wait = parse_retry_after(response.headers.get("retry-after"))
        if wait is None:
            wait = self.default_poll_seconds
        wait = min(wait, self.poll_interval_cap_seconds, max(0.0, deadline - self._clock()))
        await self._core.sleep(wait)

    async def _follow(self, response: httpx.Response, what: str, deadline: float) -> None:
        """Poll the operation that ``response`` started until it is over."""
        async_url = response.headers.get("azure-asyncoperation")
        location = response.headers.get("location")
        if async_url:
            await self._follow_async_operation(
                self._poll_url(async_url, what), response, what, deadline
            )
            return
        if not location or response.status_code not in (201, 202):
            return  # finished synchronously
        url = self._poll_url(location, what)
        current = response
        while True:
            await self._pause_before_poll(current, what, deadline)
            current = await self._core.request("GET", url, what=what, idempotent=True)
            if current.status_code != 202:
                return
            new_location = current.headers.get("location")
            if new_location:
                url = self._poll_url(new_location, what)

    async def _follow_async_operation(
        self, url: str, response: httpx.Response, what: str, deadline: float
    ) -> None:
        current = response
        while True:
            await self._pause_before_poll(current, what, deadline)
            current = await self._core.request("GET", url, what=what, idempotent=True)
            body = json_body(current, service=SERVICE, what=what)
            status = str(body.get("status", "")) if isinstance(body, dict) else ""
            if status.lower() not in _ASYNC_TERMINAL:
                continue
            if status.lower() == "succeeded":
                return
            code, message = error_details(current)
            raise PowerBIError(
                f"{SERVICE} {what}: operation {status}: {message}",
                status=current.status_code,
                code=code or status,
                request_id=request_id_of(current),
            )
