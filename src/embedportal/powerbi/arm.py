"""Async client for one capacity in Azure Resource Manager: a Power BI Embedded one
(``Microsoft.PowerBIDedicated/capacities``, api-version 2021-01-01, running state ``Succeeded``)
or a Fabric one (``Microsoft.Fabric/capacities``, api-version 2023-11-01, running state
``Active``).

Suspend, resume and SKU changes are long-running operations: ARM answers 202 with a ``Location``
(or ``Azure-AsyncOperation``) URL and a ``Retry-After``; :class:`CapacityClient` polls until the
operation is over and then returns the capacity as it now is. ARM's refusals become typed
errors with a sentence an administrator can act on: 403 :class:`CapacityPermissionError` (which
Azure role is missing), 404 :class:`CapacityNotFoundError`, 409
:class:`CapacityOperationInProgressError`, and a wait that outlives ``operation_timeout_seconds``
:class:`CapacityOperationTimeoutError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Unpack
from urllib.parse import quote, urlsplit

import httpx

from embedportal.powerbi._headers import parse_retry_after
from embedportal.powerbi._http import (
    ClientOptions,
    ServiceClient,
    error_details,
    json_body,
    request_id_of,
)
from embedportal.powerbi.connection import (
    ARM_SCOPE,
    FABRIC,
    POWERBI_DEDICATED,
    CapacityCoordinates,
    CapacityProvider,
    PowerBIConnection,
)
from embedportal.powerbi.errors import (
    CapacityNotFoundError,
    CapacityOperationInProgressError,
    CapacityOperationTimeoutError,
    CapacityPermissionError,
    PowerBIAuthError,
    PowerBIError,
    PowerBIProtocolError,
)
from embedportal.powerbi.models import CapacityInfo

logger = logging.getLogger("embedportal.powerbi")

SERVICE = "Azure Resource Manager"
API_VERSION = "2021-01-01"


@dataclass(frozen=True, slots=True)
class ProviderRules:
    """What differs between the two providers of capacities."""

    api_version: str
    active_state: str
    sku_tier: str


PROVIDER_RULES: Mapping[CapacityProvider, ProviderRules] = {
    POWERBI_DEDICATED: ProviderRules(
        api_version=API_VERSION, active_state="Succeeded", sku_tier="PBIE_Azure"
    ),
    FABRIC: ProviderRules(api_version="2023-11-01", active_state="Active", sku_tier="Fabric"),
}
# The Azure role a call needs on the capacity (or a custom role with the same actions).
READ_ROLE = "Reader"
OPERATE_ROLE = "Contributor"
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


class CapacityClient(ServiceClient):
    """``async with CapacityClient(connection) as capacity: await capacity.resume()``.

    The capacity is ``capacity`` (any capacity, of either provider, by its Azure coordinates)
    or else the connection's own ``subscription_id``, ``resource_group`` and ``capacity_name``
    (a Power BI Embedded capacity); the connection gives the credentials and ARM's URL.
    Long-running operations are polled honouring ``Retry-After`` (at most
    ``poll_interval_cap_seconds`` between polls, ``default_poll_seconds`` when the server says
    nothing) for up to ``operation_timeout_seconds``. ``sleep`` and ``clock`` are injectable;
    ``options`` are those of every client (:class:`ClientOptions`).
    """

    service = SERVICE
    scope = ARM_SCOPE
    default_min_token_seconds = DEFAULT_MIN_TOKEN_SECONDS

    def __init__(
        self,
        connection: PowerBIConnection,
        *,
        clock: Callable[[], float] = time.monotonic,
        default_poll_seconds: float = 5.0,
        poll_interval_cap_seconds: float = 30.0,
        operation_timeout_seconds: float = 900.0,
        capacity: CapacityCoordinates | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        coordinates = capacity if capacity is not None else connection.capacity
        if coordinates is None:
            raise ValueError(
                "CapacityClient needs a capacity: pass capacity=CapacityCoordinates(...) or set "
                "the connection's subscription_id, resource_group and capacity_name"
            )
        super().__init__(connection, base_url=connection.arm_url, **options)
        self.coordinates = coordinates
        self.rules = PROVIDER_RULES[coordinates.provider]
        self._clock = clock
        self.default_poll_seconds = default_poll_seconds
        self.poll_interval_cap_seconds = poll_interval_cap_seconds
        self.operation_timeout_seconds = operation_timeout_seconds
        self.path = (
            f"/subscriptions/{quote(coordinates.subscription_id, safe='')}"
            f"/resourceGroups/{quote(coordinates.resource_group, safe='')}"
            f"/providers/{coordinates.provider}/capacities/"
            f"{quote(coordinates.name, safe='')}"
        )

    @property
    def name(self) -> str:
        return self.coordinates.name

    @property
    def provider(self) -> CapacityProvider:
        return self.coordinates.provider

    @property
    def api_version(self) -> str:
        return self.rules.api_version

    @property
    def active_state(self) -> str:
        """The state ARM shows while this capacity runs: ``Succeeded`` or ``Active``."""
        return self.rules.active_state

    # -- errors ------------------------------------------------------------------------------

    def _phrase(self, doing: str) -> str:
        """``doing`` with the capacity's quoted name where it says ``{name}``."""
        return doing.replace("{name}", f"'{self.name}'")

    def _clear_error(self, error: PowerBIError, what: str, doing: str, role: str) -> PowerBIError:
        """ARM's 403 / 404 / 409 as the typed error that says what to do; others unchanged."""
        where = self.coordinates
        said = error.message.removeprefix(f"{SERVICE} {what}: ")
        details: dict[str, Any] = {
            "status": error.status,
            "code": error.code,
            "request_id": error.request_id,
            "retry_after_seconds": error.retry_after_seconds,
        }
        if error.status == 403 and not isinstance(error, PowerBIAuthError):
            return CapacityPermissionError(
                f"The service principal may not {self._phrase(doing)}: it needs the "
                f"{role} role (or a custom role allowing that action) on the capacity in "
                f"Azure (the capacity → Access control (IAM)). Azure said: {said}",
                capacity_name=where.name,
                required_role=role,
                **details,
            )
        if error.status == 404:
            return CapacityNotFoundError(
                f"There is no {where.provider} capacity '{where.name}' in resource group "
                f"'{where.resource_group}' of subscription '{where.subscription_id}', or the "
                f"service principal cannot see it: check the capacity's Azure subscription, "
                f"resource group, name and type. Azure said: {said}",
                capacity_name=where.name,
                **details,
            )
        if error.status == 409:
            return CapacityOperationInProgressError(
                f"Cannot {self._phrase(doing)} now: another operation on the capacity (a "
                f"start, pause or size change) is still running. Try again when it has "
                f"finished. Azure said: {said}",
                capacity_name=where.name,
                **details,
            )
        return error

    async def _request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        doing: str,
        role: str,
        idempotent: bool,
        json_payload: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return await self._core.request(
                method,
                url,
                what=what,
                idempotent=idempotent,
                json_payload=json_payload,
                params=params,
            )
        except PowerBIError as error:
            clear = self._clear_error(error, what, doing, role)
            if clear is error:
                raise
            raise clear from error

    # -- operations --------------------------------------------------------------------------

    async def get(self) -> CapacityInfo:
        """The capacity's state and SKU (GET of the capacity resource)."""
        what = "get capacity"
        response = await self._request(
            "GET",
            self.path,
            what=what,
            doing="read the state of capacity {name}",
            role=READ_ROLE,
            idempotent=True,
            params={"api-version": self.api_version},
        )
        return CapacityInfo.from_api(json_body(response, service=SERVICE, what=what))

    async def suspend(self, wait: bool = True) -> CapacityInfo:
        """Pause the capacity (billing stops). With ``wait``, return once it is paused."""
        return await self._operation(
            "POST", "/suspend", "suspend capacity", "pause capacity {name}", None, wait
        )

    async def resume(self, wait: bool = True) -> CapacityInfo:
        """Start the capacity (billing starts). With ``wait``, return once it runs."""
        return await self._operation(
            "POST", "/resume", "resume capacity", "start capacity {name}", None, wait
        )

    async def update_sku(
        self, sku_name: str, tier: str | None = None, wait: bool = True
    ) -> CapacityInfo:
        """Scale the capacity to ``sku_name`` (e.g. ``A2``, ``F4``). Allowed while paused.
        ``tier`` defaults to the provider's (``PBIE_Azure`` or ``Fabric``)."""
        if not sku_name:
            raise ValueError("sku_name must not be empty")
        body = {"sku": {"name": sku_name, "tier": tier or self.rules.sku_tier}}
        return await self._operation(
            "PATCH",
            "",
            f"change capacity SKU to {sku_name}",
            "change the SKU of capacity {name} to " + sku_name,
            body,
            wait,
        )

    # -- long-running operations -------------------------------------------------------------

    async def _operation(
        self, method: str, suffix: str, what: str, doing: str, body: Any, wait: bool
    ) -> CapacityInfo:
        started = self._clock()
        response = await self._request(
            method,
            self.path + suffix,
            what=what,
            doing=doing,
            role=OPERATE_ROLE,
            idempotent=False,
            json_payload=body,
            params={"api-version": self.api_version},
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
        try:
            await self._follow(response, what, doing, deadline)
        except CapacityOperationTimeoutError as timed_out:
            raise await self._with_last_state(timed_out, doing) from None
        info = await self.get()
        while info.state in TRANSITIONAL_STATES:
            await self._pause_before_poll(None, doing, deadline, info.state)
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

    async def _with_last_state(
        self, error: CapacityOperationTimeoutError, doing: str
    ) -> CapacityOperationTimeoutError:
        """The time-out, saying which state the capacity is in now (when ARM tells)."""
        try:
            state = (await self.get()).state
        except PowerBIError:
            return error
        return self._timeout(doing, state)

    def _timeout(self, doing: str, last_state: str | None) -> CapacityOperationTimeoutError:
        seen = f" (it is in state {last_state})" if last_state else ""
        return CapacityOperationTimeoutError(
            f"Could not {self._phrase(doing)}: not finished after "
            f"{self.operation_timeout_seconds:g}s{seen}. Azure may still complete it; "
            "read the capacity's state before trying again.",
            capacity_name=self.name,
            timeout_seconds=self.operation_timeout_seconds,
            last_state=last_state,
        )

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
        self,
        response: httpx.Response | None,
        doing: str,
        deadline: float,
        last_state: str | None = None,
    ) -> None:
        if self._clock() >= deadline:
            raise self._timeout(doing, last_state)
        wait = None
        if response is not None:
            wait = parse_retry_after(response.headers.get("retry-after"))
        if wait is None:
            wait = self.default_poll_seconds
        wait = min(wait, self.poll_interval_cap_seconds, max(0.0, deadline - self._clock()))
        await self._core.sleep(wait)

    async def _follow(
        self, response: httpx.Response, what: str, doing: str, deadline: float
    ) -> None:
        """Poll the operation that ``response`` started until it is over."""
        async_url = response.headers.get("azure-asyncoperation")
        location = response.headers.get("location")
        if async_url:
            await self._follow_async_operation(
                self._poll_url(async_url, what), response, what, doing, deadline
            )
            return
        if not location or response.status_code not in (201, 202):
            return  # finished synchronously
        url = self._poll_url(location, what)
        current = response
        while True:
            await self._pause_before_poll(current, doing, deadline)
            current = await self._request(
                "GET", url, what=what, doing=doing, role=READ_ROLE, idempotent=True
            )
            if current.status_code != 202:
                return
            new_location = current.headers.get("location")
            if new_location:
                url = self._poll_url(new_location, what)

    async def _follow_async_operation(
        self, url: str, response: httpx.Response, what: str, doing: str, deadline: float
    ) -> None:
        current = response
        while True:
            await self._pause_before_poll(current, doing, deadline)
            current = await self._request(
                "GET", url, what=what, doing=doing, role=READ_ROLE, idempotent=True
            )
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
