"""The private data API the embed iframe reads reports through (docs/emulator-contract.md),
and the emulator-only endpoints tests and the benchmark read counters from and set fault knobs
with.

Data calls carry `Authorization: EmbedToken <token>`, or `Authorization: Bearer <token>` with a
person's own Entra token (embed for your organization). The token's signature, expiry and report
scope (for a person: membership of the report's workspace) are checked on every call, the
report's capacity must be running, and row-level security comes from the token's identity (for
a person: their directory roles, by their user principal name), applied here: rows an identity
may not see never leave the server.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from embedportal.emulator.capacity import AZURE_ROLES, Capacity
from embedportal.emulator.demo import Report
from embedportal.emulator.directory import DirectoryUser
from embedportal.emulator.errors import EmulatorError, invalid_request, not_found, powerbi_error
from embedportal.emulator.query import QueryError, evaluate, parse_filters
from embedportal.emulator.state import EmulatorState, get_state
from embedportal.emulator.tokens import POWERBI_AUDIENCE, InvalidTokenError

router = APIRouter(prefix="/emulator/api")

_NO_STORE = {"Cache-Control": "no-store"}


def _not_authorized(message: str) -> EmulatorError:
    return powerbi_error(403, "PowerBINotAuthorizedException", message)


def _expired() -> EmulatorError:
    return powerbi_error(
        403, "TokenExpired", "Access token has expired, resubmit with a new access token"
    )


def _person_claims(state: EmulatorState, token: str) -> dict[str, Any]:
    """A person's Entra token, in the shape of an embed token's claims: the report scope is
    their workspaces, the identity their user principal name and directory roles."""
    try:
        caller = state.signer.read_entra_token(token)
    except InvalidTokenError:
        raise _not_authorized("The access token is not valid") from None
    person = state.directory.by_object_id(str(caller.claims.get("oid", "")))
    if caller.audience != POWERBI_AUDIENCE or caller.claims.get("idtyp") != "user" or not person:
        raise _not_authorized("The access token is not a person's Power BI token")
    if state.now() >= caller.expires_at:
        raise _expired()
    return {"exp": caller.expires_at, "person": person}


def _embed_claims(request: Request, state: EmulatorState) -> dict[str, Any]:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return _person_claims(state, token.strip())
    if scheme.lower() != "embedtoken" or not token.strip():
        raise _not_authorized("An embed token is required: 'Authorization: EmbedToken <token>'")
    try:
        claims = state.signer.read_embed_token(token.strip())
    except InvalidTokenError:
        raise _not_authorized("The embed token is not valid") from None
    if state.now() >= float(claims["exp"]):
        raise _expired()
    return claims


def _authorized_report(
    request: Request, state: EmulatorState, report_id: str
) -> tuple[Report, dict[str, Any]]:
    """The report, once the token allows it and its capacity runs."""
    claims = _embed_claims(request, state)
    report = state.content.reports.get(report_id.lower())
    if report is None:
        raise not_found(f"Report '{report_id}'")
    person = claims.get("person")
    if isinstance(person, DirectoryUser):
        if report.workspace_id not in person.workspace_ids:
            raise _not_authorized(f"You are not a member of report '{report.id}''s workspace")
    elif not isinstance(granted := claims.get("reports"), list) or not any(
        isinstance(item, dict) and item.get("id") == report.id for item in granted
    ):
        raise _not_authorized(f"The embed token does not grant access to report '{report.id}'")
    capacity = state.capacity_for_workspace(report.workspace_id)
    if capacity is None or not capacity.is_running(state.now()):
        raise powerbi_error(
            503,
            "CapacityNotActive",
            "Capacity operation failed with error code CapacityNotActive",
        )
    return report, claims


def _identity_for(claims: dict[str, Any], dataset_id: str) -> tuple[str | None, tuple[str, ...]]:
    person = claims.get("person")
    if isinstance(person, DirectoryUser):
        return person.email, person.rls_roles
    for identity in claims.get("identities") or []:
        if isinstance(identity, dict) and dataset_id in (identity.get("datasets") or []):
            username = identity.get("username")
            roles = identity.get("roles") or []
            return (
                username if isinstance(username, str) else None,
                tuple(role for role in roles if isinstance(role, str)),
            )
    return None, ()


@router.get("/reports/{report_id}")
async def report_definition(report_id: str, request: Request) -> JSONResponse:
    state = get_state(request)
    report, _ = _authorized_report(request, state, report_id)
    return JSONResponse(report.definition(), headers=_NO_STORE)


@router.post("/reports/{report_id}/query")
async def query(report_id: str, request: Request) -> JSONResponse:
    state = get_state(request)
    report, claims = _authorized_report(request, state, report_id)
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:  # not UTF-8, not JSON, or numbers too long to convert
        raise invalid_request("The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object {page, visual, filters}")
    page_name, visual_name = body.get("page"), body.get("visual")
    if not isinstance(page_name, str) or not isinstance(visual_name, str):
        raise invalid_request("'page' and 'visual' must be strings")
    page = report.page(page_name)
    if page is None:
        raise not_found(f"Page '{page_name}'")
    visual = page.visual(visual_name)
    if visual is None:
        raise not_found(f"Visual '{visual_name}'")
    table = state.content.table
    try:
        filters = parse_filters(body.get("filters"), table)
    except QueryError as error:
        raise invalid_request(str(error)) from None

    dataset = state.content.datasets[report.dataset_id]
    person = claims.get("person")
    if isinstance(person, DirectoryUser) and not person.rls_roles:
        security = None  # a workspace member in no RLS role sees every row, as in Power BI
    else:
        username, roles = _identity_for(claims, dataset.id)
        security = dataset.security(username, roles)
    key = (dataset.id, visual.query, filters, security)
    try:
        result = state.query_cache.get_or_compute(
            key, lambda: evaluate(table, visual.query, filters, security)
        )
    except QueryError as error:
        raise invalid_request(str(error)) from None
    state.counters.data_queries += 1
    return JSONResponse(result.as_json(), headers=_NO_STORE)


@router.get("/stats")
async def stats(request: Request) -> JSONResponse:
    """Counters for tests and the benchmark (emulator-only; no real service has this)."""
    return JSONResponse(get_state(request).stats(), headers=_NO_STORE)


def _named_capacity(state: EmulatorState, name: str) -> Capacity:
    capacity = state.capacity_named(name)
    if capacity is None:
        raise not_found(f"Capacity '{name}'")
    return capacity


@router.get("/capacities/{name}/meter")
async def meter(name: str, request: Request) -> JSONResponse:
    """Active (billed) seconds and start/pause counts of a capacity (emulator-only)."""
    state = get_state(request)
    capacity = _named_capacity(state, name)
    return JSONResponse(capacity.meter(state.now()), headers=_NO_STORE)


# --- fault knobs (emulator-only) ---------------------------------------------------------------


def _faults(capacity: Capacity) -> dict[str, object]:
    return {
        "azureRole": capacity.azure_role,
        "transitionSeconds": capacity.transition_override,
        "provider": capacity.provider.namespace,
    }


_MAX_TRANSITION_SECONDS = 86_400.0


def _apply_faults(capacity: Capacity, body: Any) -> None:
    """Check the whole body first, then change: a refused body changes nothing."""
    if not isinstance(body, dict):
        raise invalid_request("The body must be a JSON object {azureRole?, transitionSeconds?}")
    unknown = sorted(set(body) - {"azureRole", "transitionSeconds"})
    if unknown:
        raise invalid_request(f"Unknown fault knobs: {', '.join(unknown)}")
    role = body.get("azureRole", capacity.azure_role)
    if role not in AZURE_ROLES:
        raise invalid_request(f"'azureRole' must be one of {', '.join(AZURE_ROLES)}")
    seconds = body.get("transitionSeconds", capacity.transition_override)
    if seconds is not None and (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 0 <= seconds <= _MAX_TRANSITION_SECONDS
    ):
        raise invalid_request(
            "'transitionSeconds' must be null (the emulator's setting) or a number of seconds "
            f"from 0 to {_MAX_TRANSITION_SECONDS:g}"
        )
    capacity.azure_role = role
    capacity.transition_override = None if seconds is None else float(seconds)


@router.get("/capacities/{name}/faults")
async def get_faults(name: str, request: Request) -> JSONResponse:
    """The capacity's fault knobs: the caller's Azure role on it and its own transition time."""
    capacity = _named_capacity(get_state(request), name)
    return JSONResponse(_faults(capacity), headers=_NO_STORE)


@router.put("/capacities/{name}/faults")
async def set_faults(name: str, request: Request) -> JSONResponse:
    """Change some knobs: `{"azureRole": "Reader"}` makes ARM refuse suspend, resume and scale
    with 403, `"None"` refuses reads too; `{"transitionSeconds": 60}` makes this capacity's
    next operations take a minute (an operation already running keeps its end)."""
    capacity = _named_capacity(get_state(request), name)
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        raise invalid_request("The request body is not valid JSON") from None
    _apply_faults(capacity, body)
    return JSONResponse(_faults(capacity), headers=_NO_STORE)


@router.delete("/capacities/{name}/faults")
async def reset_faults(name: str, request: Request) -> JSONResponse:
    """Back to the defaults: Contributor, and the emulator-wide transition time."""
    capacity = _named_capacity(get_state(request), name)
    capacity.azure_role = "Contributor"
    capacity.transition_override = None
    return JSONResponse(_faults(capacity), headers=_NO_STORE)
