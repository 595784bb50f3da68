"""Azure Resource Manager for capacities of two providers, `Microsoft.PowerBIDedicated`
(api-version 2021-01-01 or 2017-10-01) and `Microsoft.Fabric` (api-version 2023-11-01): get,
list, suspend, resume and update (SKU), with ARM's long-running-operation protocol.

Suspend, resume and a SKU change answer 202 with `Location` (→ `operationresults/{id}`: 202
while running, then 200 with the capacity) and `Azure-AsyncOperation` (→ `operationstatuses/
{id}`: a status object), both with `Retry-After`; another operation while one runs is 409.
The caller's Azure role on each capacity is a fault knob (`/emulator/api/capacities/{name}/
faults`): Reader may only read, no role may do nothing (403 `AuthorizationFailed`). ARM path
segments are case-insensitive, so one route takes every `/subscriptions/...` path and matches
it here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from embedportal.emulator.capacity import (
    POWERBI_DEDICATED,
    PROVIDERS,
    Capacity,
    CapacityConflictError,
    Operation,
    Provider,
)
from embedportal.emulator.errors import EmulatorError, arm_error
from embedportal.emulator.state import CAPACITY_LOCATION_SLUG, EmulatorState, get_state
from embedportal.emulator.tokens import ARM_AUDIENCE, EntraToken, InvalidTokenError

router = APIRouter()

PROVIDER = POWERBI_DEDICATED.slug
SUPPORTED_API_VERSIONS = POWERBI_DEDICATED.api_versions


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _unauthenticated(code: str, message: str, base_url: str) -> EmulatorError:
    challenge = (
        f'Bearer authorization_uri="{base_url}/", error="invalid_token", '
        f'error_description="{message}"'
    )
    return arm_error(401, code, message, headers={"WWW-Authenticate": challenge})


def _authenticate(request: Request, state: EmulatorState) -> EntraToken:
    base_url = state.base_url(request)
    header = request.headers.get("authorization")
    if not header:
        raise _unauthenticated(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
            base_url,
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthenticated(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            base_url,
        )
    try:
        caller = state.signer.read_entra_token(token.strip())
    except InvalidTokenError:
        raise _unauthenticated(
            "InvalidAuthenticationToken", "The access token is invalid.", base_url
        ) from None
    if caller.audience != ARM_AUDIENCE:
        raise _unauthenticated(
            "InvalidAuthenticationToken",
            f"The access token has been obtained for wrong audience or resource "
            f"'{caller.audience}'. It should exactly match with one of the allowed audiences "
            f"'{ARM_AUDIENCE}'.",
            base_url,
        )
    if caller.tenant_id != state.settings.tenant_id:
        raise _unauthenticated(
            "InvalidAuthenticationTokenTenant",
            "The access token is from the wrong issuer. It must match the tenant of the "
            "subscription.",
            base_url,
        )
    now = state.now()
    if now >= caller.expires_at:
        raise _unauthenticated(
            "ExpiredAuthenticationToken",
            f"The access token expiry UTC time '{_iso(caller.expires_at)}' is earlier than "
            f"current UTC time '{_iso(now)}'.",
            base_url,
        )
    return caller


def _api_version(request: Request) -> str:
    version = request.query_params.get("api-version")
    if not version:
        raise arm_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    return version


def _check_api_version(version: str, provider: Provider) -> None:
    if version not in provider.api_versions:
        raise arm_error(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{version}' is invalid for '{provider.resource_type}'. The "
            f"supported versions are '{', '.join(provider.api_versions)}'.",
        )


@dataclass(frozen=True, slots=True)
class _Target:
    """What an ARM path names, once matched."""

    kind: str  # capacity, action, list_group, list_subscription, operation
    subscription: str
    provider: Provider
    resource_group: str | None = None
    name: str | None = None
    action: str | None = None
    operation_id: str | None = None
    operation_view: str | None = None


def _match(path: str) -> _Target | None:
    parts = path.split("/")
    if not parts or not parts[0]:
        return None
    subscription, rest = parts[0], parts[1:]
    lowered = [part.lower() for part in rest]
    if lowered[:1] == ["resourcegroups"] and len(rest) >= 5:
        group = rest[1]
        provider = PROVIDERS.get(lowered[3])
        if lowered[2] != "providers" or provider is None or lowered[4] != "capacities":
            return None
        if len(rest) == 5:
            return _Target("list_group", subscription, provider, group)
        if len(rest) == 6:
            return _Target("capacity", subscription, provider, group, rest[5])
        if len(rest) == 7 and lowered[6] in ("suspend", "resume"):
            return _Target("action", subscription, provider, group, rest[5], action=lowered[6])
        return None
    provider = PROVIDERS.get(lowered[1]) if len(lowered) >= 2 else None
    if lowered[:1] == ["providers"] and provider is not None:
        if lowered[2:] == ["capacities"]:
            return _Target("list_subscription", subscription, provider)
        if (
            len(rest) == 6
            and lowered[2] == "locations"
            and lowered[4] in ("operationresults", "operationstatuses")
        ):
            return _Target(
                "operation", subscription, provider, operation_id=rest[5], operation_view=lowered[4]
            )
    return None


def _resource_not_found(state: EmulatorState, target: _Target) -> EmulatorError:
    if target.subscription.lower() != state.settings.subscription_id:
        message = f"The subscription '{target.subscription}' could not be found."
    elif (target.resource_group or "").lower() != state.settings.resource_group.lower():
        message = f"Resource group '{target.resource_group}' could not be found."
    else:
        message = (
            f"The Resource '{target.provider.resource_type}/{target.name}' under resource "
            f"group '{target.resource_group}' was not found."
        )
    return arm_error(404, "ResourceNotFound", message)


def _not_authorized(caller: EntraToken, capacity: Capacity, action: str) -> EmulatorError:
    """403 as ARM answers a caller without the Azure role an action needs."""
    verb = f"{capacity.provider.resource_type}/{action}"
    return arm_error(
        403,
        "AuthorizationFailed",
        f"Authorization failed: the client '{caller.app_id}' (object id "
        f"'{caller.claims.get('oid', '')}') lacks permission for action '{verb}' at scope "
        f"'{capacity.resource_id}'. Grant it a role that allows the action on the capacity, "
        "then get a new access token.",
    )


def _authorize(caller: EntraToken, capacity: Capacity, action: str) -> None:
    """The caller's role on the capacity (a fault knob) must allow the action."""
    role = capacity.azure_role
    if role == "Contributor" or (role == "Reader" and action == "read"):
        return
    raise _not_authorized(caller, capacity, action)


def _capacity(state: EmulatorState, target: _Target) -> Capacity:
    settings = state.settings
    capacity = state.capacity_named(target.name or "", target.provider)
    if (
        target.subscription.lower() != settings.subscription_id
        or (target.resource_group or "").lower() != settings.resource_group.lower()
        or capacity is None
    ):
        raise _resource_not_found(state, target)
    return capacity


def _operation_urls(
    request: Request, state: EmulatorState, operation: Operation, api_version: str
) -> dict[str, str]:
    root = (
        f"{state.base_url(request)}/subscriptions/{state.settings.subscription_id}/providers/"
        f"{operation.provider.namespace}/locations/{CAPACITY_LOCATION_SLUG}"
    )
    query = f"?api-version={api_version}"
    return {
        "Location": f"{root}/operationresults/{operation.id}{query}",
        "Azure-AsyncOperation": f"{root}/operationstatuses/{operation.id}{query}",
    }


def _retry_after(operation: Operation, now: float) -> str:
    return str(max(0, math.ceil(operation.ends_at - now)))


def _accepted(
    request: Request,
    state: EmulatorState,
    operation: Operation,
    api_version: str,
    body: dict[str, Any] | None = None,
) -> Response:
    state.operations[operation.id] = operation
    headers = _operation_urls(request, state, operation, api_version)
    headers["Retry-After"] = _retry_after(operation, state.now())
    if body is None:
        return Response(status_code=202, headers=headers)
    return JSONResponse(body, status_code=202, headers=headers)


def _conflict(error: CapacityConflictError) -> EmulatorError:
    return arm_error(409, "BadRequest", str(error))


async def _patch_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:  # not UTF-8, not JSON, or numbers too long to convert
        body = None
    if not isinstance(body, dict):
        raise arm_error(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return body


_Update = tuple[str | None, dict[str, str] | None, list[str] | None]


def _parse_update(body: dict[str, Any], provider: Provider = POWERBI_DEDICATED) -> _Update:
    """(new SKU, new tags, new administrators) of an update (PATCH) body, checked."""
    sku_name: str | None = None
    sku = body.get("sku")
    tier_name = provider.sku_tier
    if sku is not None:
        if not isinstance(sku, dict) or not isinstance(sku.get("name"), str):
            raise arm_error(400, "InvalidRequestContent", '\'sku\' must be {"name", "tier"}.')
        sku_name = sku["name"]
        tier = sku.get("tier", tier_name)
        if tier != tier_name:
            raise arm_error(
                400, "BadRequest", f"The SKU tier '{tier}' is not supported; use '{tier_name}'."
            )
        if sku_name not in provider.skus:
            raise arm_error(
                400,
                "BadRequest",
                f"The SKU '{sku_name}' is not valid for tier '{tier_name}'. Valid SKUs: "
                f"{', '.join(provider.skus)}.",
            )
    tags = body.get("tags")
    if tags is not None and (
        not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())
    ):
        raise arm_error(400, "InvalidRequestContent", "'tags' must map names to strings.")
    members: list[str] | None = None
    properties = body.get("properties")
    if properties is not None:
        if not isinstance(properties, dict):
            raise arm_error(400, "InvalidRequestContent", "'properties' must be an object.")
        mode = properties.get("mode")
        if provider is POWERBI_DEDICATED and mode is not None and mode != "Gen2":
            raise arm_error(400, "BadRequest", "Only mode 'Gen2' is supported.")
        administration = properties.get("administration")
        if administration is not None:
            raw_members = (
                administration.get("members") if isinstance(administration, dict) else None
            )
            if not isinstance(raw_members, list) or not all(
                isinstance(m, str) for m in raw_members
            ):
                raise arm_error(
                    400,
                    "InvalidRequestContent",
                    "'properties.administration.members' must be a list of strings.",
                )
            members = list(raw_members)
    return sku_name, tags, members


@router.api_route(
    "/subscriptions/{path:path}",
    methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
    include_in_schema=False,
)
async def arm(path: str, request: Request) -> Response:
    state = get_state(request)
    caller = _authenticate(request, state)
    api_version = _api_version(request)
    target = _match(path)
    if target is None:
        raise arm_error(
            404, "InvalidResourceType", f"No resource or operation at '/subscriptions/{path}'."
        )
    _check_api_version(api_version, target.provider)
    method = request.method
    allowed = {
        "capacity": ("GET", "PATCH"),
        "action": ("POST",),
        "list_group": ("GET",),
        "list_subscription": ("GET",),
        "operation": ("GET",),
    }[target.kind]
    if method not in allowed:
        raise arm_error(
            405,
            "MethodNotAllowed",
            f"The emulator does not support {method} on this resource; it supports "
            f"{', '.join(allowed)}.",
            headers={"Allow": ", ".join(allowed)},
        )
    now = state.now()

    if target.kind == "list_subscription" or target.kind == "list_group":
        if target.subscription.lower() != state.settings.subscription_id:
            raise _resource_not_found(state, target)
        if target.kind == "list_group" and (
            (target.resource_group or "").lower() != state.settings.resource_group.lower()
        ):
            raise _resource_not_found(state, target)
        listed = [
            capacity.resource(now)
            for capacity in state.capacities.values()
            if capacity.provider is target.provider and capacity.azure_role != "None"
        ]
        return JSONResponse({"value": listed})

    if target.kind == "operation":
        return _operation(request, state, target, api_version)

    capacity = _capacity(state, target)
    if method == "GET":
        _authorize(caller, capacity, "read")
    else:
        _authorize(caller, capacity, target.action or "write")
    if target.kind == "action":
        try:
            started = capacity.suspend(now) if target.action == "suspend" else capacity.resume(now)
        except CapacityConflictError as error:
            raise _conflict(error) from None
        if started is None:
            return Response(status_code=200)
        return _accepted(request, state, started, api_version)

    if method == "GET":
        return JSONResponse(capacity.resource(now))

    sku, tags, members = _parse_update(await _patch_body(request), capacity.provider)
    pending = capacity.pending_operation(now)
    if pending is not None:
        raise _conflict(CapacityConflictError(capacity.state, "update"))
    if tags is not None:
        capacity.tags = dict(tags)
    if members is not None:
        capacity.administrators = tuple(members)
    scaling = capacity.scale(now, sku) if sku is not None else None
    if scaling is None:
        return JSONResponse(capacity.resource(now))
    return _accepted(request, state, scaling, api_version, capacity.resource(now))


def _operation(
    request: Request, state: EmulatorState, target: _Target, api_version: str
) -> Response:
    operation = state.operations.get((target.operation_id or "").lower())
    if (
        operation is None
        or operation.provider is not target.provider
        or target.subscription.lower() != state.settings.subscription_id
    ):
        raise arm_error(
            404, "ResourceNotFound", f"The operation '{target.operation_id}' was not found."
        )
    capacity = state.capacity_named(operation.capacity_name, operation.provider)
    now = state.now()
    if capacity is not None:
        capacity.advance(now)
    done = operation.done(now)
    retry = {"Retry-After": _retry_after(operation, now)}
    if target.operation_view == "operationstatuses":
        status: dict[str, Any] = {
            "id": str(request.url.path),
            "name": operation.id,
            "status": "Succeeded" if done else "InProgress",
            "startTime": _iso(operation.started_at),
        }
        if done:
            status["endTime"] = _iso(operation.ends_at)
        return JSONResponse(status, headers={} if done else retry)
    if not done:
        headers = {"Location": _operation_urls(request, state, operation, api_version)["Location"]}
        headers.update(retry)
        return Response(status_code=202, headers=headers)
    body = capacity.resource(now) if capacity is not None else {}
    return JSONResponse(body)
