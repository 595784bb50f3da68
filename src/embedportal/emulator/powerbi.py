"""The Power BI REST API under `/v1.0/myorg/`: capacities, workspaces, reports, datasets,
GenerateToken.

Requests need an Entra token for the Power BI scope. Validation follows Power BI: unknown ids
answer 404 PowerBIEntityNotFound, malformed bodies 400 InvalidRequest, RLS datasets demand an
effective identity and non-RLS datasets refuse one, at most 50 items of each kind.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from embedportal.emulator.capacity import Capacity
from embedportal.emulator.demo import Dataset, DemoContent, Report, Workspace
from embedportal.emulator.errors import (
    EmulatorError,
    entity_not_found,
    invalid_request,
    not_authorized,
    powerbi_error,
    unsupported_media_type,
)
from embedportal.emulator.state import EmulatorState, get_state, retry_after_header
from embedportal.emulator.tokens import POWERBI_AUDIENCE, EntraToken, InvalidTokenError

router = APIRouter(prefix="/v1.0/myorg")
logger = logging.getLogger("embedportal.emulator")

MAX_ITEMS = 50
MAX_USERNAME_LENGTH = 256
MAX_ROLE_LENGTH = 50
MAX_LIFETIME_MINUTES = 10**9  # longer than any cap; keeps huge values out of float overflow
EMBED_TOKEN_CONTEXT = "$metadata#Microsoft.PowerBI.ServiceClient.Models.EmbedToken"
CREATED_DATE = "2024-01-01T00:00:00Z"
# What a workspace holds besides its capacity: the two kinds answer alike.
WorkspaceItem = TypeVar("WorkspaceItem", Report, Dataset)


# --- authentication and the request budget -------------------------------------------------------


def _not_authorized(reason: str) -> EmulatorError:
    # Power BI's body says nothing more than the code; the reason goes to the emulator's log,
    # where whoever debugs a refusal can find it.
    logger.info("Power BI REST refused: %s", reason)
    return not_authorized()


def not_found(what: str) -> EmulatorError:
    logger.info("Power BI REST: %s was not found", what)
    return entity_not_found()


def require_json_body(request: Request) -> None:
    """Power BI answers 415 to a POST whose body is not declared JSON (charset and other
    parameters are fine)."""
    content_type = request.headers.get("content-type")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise unsupported_media_type(content_type)


def authenticate(request: Request) -> EntraToken:
    """The caller's Entra token (Power BI audience, this tenant, not expired), after counting
    the request against the caller's budget."""
    state = get_state(request)
    header = request.headers.get("authorization")
    if not header:
        raise _not_authorized("The Authorization header is missing")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _not_authorized("The Authorization header must be 'Bearer <access token>'")
    try:
        caller = state.signer.read_entra_token(token.strip())
    except InvalidTokenError:
        raise _not_authorized("The access token is invalid") from None
    if caller.audience != POWERBI_AUDIENCE:
        raise _not_authorized(
            f"The access token was issued for '{caller.audience}', not for Power BI "
            f"('{POWERBI_AUDIENCE}')"
        )
    settings = state.settings
    if caller.tenant_id != settings.tenant_id or caller.app_id != settings.client_id:
        raise _not_authorized("The access token was issued to another tenant or application")
    now = state.now()
    if now >= caller.expires_at:
        raise powerbi_error(
            403, "TokenExpired", "Access token has expired, resubmit with a new access token"
        )
    wait = state.budget.take(caller.app_id, now)
    if wait is not None:
        state.counters.throttled_requests += 1
        seconds = retry_after_header(wait)
        raise powerbi_error(
            429,
            "TooManyRequests",
            f"The request budget of {state.budget.limit} requests per "
            f"{state.budget.window:g} seconds is used up. Retry in {seconds} seconds.",
            headers={"Retry-After": seconds},
        )
    state.counters.powerbi_requests += 1
    return caller


# --- lookups and shapes --------------------------------------------------------------------------


def visible_to(state: EmulatorState, caller: EntraToken, workspace_id: str) -> bool:
    """A service principal sees every workspace (the demo adds it to all of them); a person
    signed in with their own token sees the workspaces they are a member of."""
    if caller.claims.get("idtyp") != "user":
        return True
    person = state.directory.by_object_id(str(caller.claims.get("oid", "")))
    return person is not None and workspace_id in person.workspace_ids


def _workspace(state: EmulatorState, group_id: str, caller: EntraToken) -> Workspace:
    workspace = state.content.workspaces.get(group_id.lower())
    if workspace is None:
        raise not_found(f"Workspace '{group_id}'")
    if not visible_to(state, caller, workspace.id):
        raise not_authorized()
    return workspace


def _item_in(
    items: Mapping[str, WorkspaceItem], workspace: Workspace, item_id: str, kind: str
) -> WorkspaceItem:
    """The report or dataset ``item_id`` of ``workspace`` (any case), else Power BI's 404."""
    item = items.get(item_id.lower())
    if item is None or item.workspace_id != workspace.id:
        raise not_found(f"{kind} '{item_id}'")
    return item


def _report_in(state: EmulatorState, workspace: Workspace, report_id: str) -> Report:
    return _item_in(state.content.reports, workspace, report_id, "Report")


def _dataset_in(state: EmulatorState, workspace: Workspace, dataset_id: str) -> Dataset:
    return _item_in(state.content.datasets, workspace, dataset_id, "Dataset")


def capacity_id(state: EmulatorState, workspace: Workspace | None = None) -> str:
    """A workspace's `capacityId` (default: the first demo workspace's), in capitals."""
    if workspace is None:
        return state.capacity.powerbi_id.upper()
    capacity = state.capacities[workspace.capacity]
    return capacity.powerbi_id.upper()


def capacity_json(state: EmulatorState, capacity: Capacity) -> dict[str, Any]:
    """A capacity as `GET /v1.0/myorg/capacities` lists it; its `state` follows ARM's."""
    return {
        "id": capacity.powerbi_id,
        "displayName": capacity.name,
        "admins": list(capacity.administrators),
        "sku": capacity.sku,
        "state": capacity.powerbi_state(state.now()),
        "capacityUserAccessRight": "Admin",
        "region": capacity.location,
    }


def workspace_json(state: EmulatorState, workspace: Workspace) -> dict[str, Any]:
    return {
        "id": workspace.id,
        "isReadOnly": False,
        "isOnDedicatedCapacity": True,
        "capacityId": capacity_id(state, workspace),
        "defaultDatasetStorageFormat": "Small",
        "type": "Workspace",
        "name": workspace.name,
    }


def report_json(base_url: str, report: Report) -> dict[str, Any]:
    group = report.workspace_id
    return {
        "id": report.id,
        "reportType": "PowerBIReport",
        "name": report.name,
        "webUrl": f"{base_url}/groups/{group}/reports/{report.id}",
        "embedUrl": f"{base_url}/reportEmbed?reportId={report.id}&groupId={group}",
        "isFromPbix": True,
        "isOwnedByMe": True,
        "datasetId": report.dataset_id,
        "datasetWorkspaceId": group,
        "users": [],
        "subscriptions": [],
    }


def dataset_json(base_url: str, dataset: Dataset) -> dict[str, Any]:
    return {
        "id": dataset.id,
        "name": dataset.name,
        "webUrl": f"{base_url}/groups/{dataset.workspace_id}/datasets/{dataset.id}",
        "addRowsAPIEnabled": False,
        "configuredBy": "emulator@example.com",
        "isRefreshable": True,
        "isEffectiveIdentityRequired": dataset.is_effective_identity_required,
        "isEffectiveIdentityRolesRequired": dataset.is_effective_identity_roles_required,
        "isOnPremGatewayRequired": False,
        "targetStorageMode": "Abf",
        "createdDate": CREATED_DATE,
        "upstreamDatasets": [],
        "users": [],
    }


def _context(base_url: str, suffix: str) -> str:
    return f"{base_url}/v1.0/myorg/{suffix}"


# --- read endpoints ------------------------------------------------------------------------------


@router.get("/capacities")
async def list_capacities(request: Request) -> JSONResponse:
    authenticate(request)
    state = get_state(request)
    base_url = state.base_url(request)
    return JSONResponse(
        {
            "@odata.context": _context(base_url, "$metadata#capacities"),
            "value": [capacity_json(state, c) for c in state.capacities.values()],
        }
    )


@router.get("/groups")
async def list_groups(request: Request) -> JSONResponse:
    caller = authenticate(request)
    state = get_state(request)
    base_url = state.base_url(request)
    workspaces = [w for w in state.content.workspaces.values() if visible_to(state, caller, w.id)]
    return JSONResponse(
        {
            "@odata.context": _context(base_url, "$metadata#groups"),
            "@odata.count": len(workspaces),
            "value": [workspace_json(state, w) for w in workspaces],
        }
    )


def _workspace_listing(
    request: Request,
    group_id: str,
    collection: str,
    items_in: Callable[[DemoContent, str], list[WorkspaceItem]],
    to_json: Callable[[str, WorkspaceItem], dict[str, Any]],
) -> JSONResponse:
    """A workspace's reports or datasets (``collection``), as Power BI lists them."""
    caller = authenticate(request)
    state = get_state(request)
    workspace = _workspace(state, group_id, caller)
    base_url = state.base_url(request)
    return JSONResponse(
        {
            "@odata.context": _context(base_url, f"groups/{workspace.id}/$metadata#{collection}"),
            "value": [to_json(base_url, item) for item in items_in(state.content, workspace.id)],
        }
    )


def _entity(
    base_url: str,
    collection: str,
    item: WorkspaceItem,
    to_json: Callable[[str, WorkspaceItem], dict[str, Any]],
) -> JSONResponse:
    """One report or dataset, as Power BI answers a GET of it."""
    context = _context(base_url, f"groups/{item.workspace_id}/$metadata#{collection}/$entity")
    return JSONResponse({"@odata.context": context, **to_json(base_url, item)})


@router.get("/groups/{group_id}/reports")
async def list_reports(group_id: str, request: Request) -> JSONResponse:
    return _workspace_listing(request, group_id, "reports", DemoContent.reports_in, report_json)


@router.get("/groups/{group_id}/reports/{report_id}")
async def get_report(group_id: str, report_id: str, request: Request) -> JSONResponse:
    caller = authenticate(request)
    state = get_state(request)
    report = _report_in(state, _workspace(state, group_id, caller), report_id)
    return _entity(state.base_url(request), "reports", report, report_json)


@router.get("/groups/{group_id}/datasets")
async def list_datasets(group_id: str, request: Request) -> JSONResponse:
    return _workspace_listing(request, group_id, "datasets", DemoContent.datasets_in, dataset_json)


@router.get("/groups/{group_id}/datasets/{dataset_id}")
async def get_dataset(group_id: str, dataset_id: str, request: Request) -> JSONResponse:
    caller = authenticate(request)
    state = get_state(request)
    dataset = _dataset_in(state, _workspace(state, group_id, caller), dataset_id)
    return _entity(state.base_url(request), "datasets", dataset, dataset_json)


# --- GenerateToken request bodies ----------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class ReportRequest(_Body):
    id: uuid.UUID
    allowEdit: bool | None = None


class DatasetRequest(_Body):
    id: str
    xmlaPermissions: Literal["Off", "ReadOnly"] | None = None


class WorkspaceRequest(_Body):
    id: uuid.UUID


class IdentityBlob(_Body):
    value: str


class EffectiveIdentity(_Body):
    username: str | None = None
    roles: list[str] | None = None
    datasets: list[str] | None = None
    customData: str | None = None
    identityBlob: IdentityBlob | None = None
    auditableContext: str | None = None


class GenerateTokenRequestV2(_Body):
    datasets: list[DatasetRequest] | None = None
    reports: list[ReportRequest] | None = None
    targetWorkspaces: list[WorkspaceRequest] | None = None
    identities: list[EffectiveIdentity] | None = None
    lifetimeInMinutes: int | None = None


class GenerateTokenRequest(_Body):
    accessLevel: str | None = None
    allowSaveAs: bool | None = None
    datasetId: str | None = None
    identities: list[EffectiveIdentity] | None = None
    lifetimeInMinutes: int | None = None


BodyT = TypeVar("BodyT", bound=_Body)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        location = ".".join(str(step) for step in item["loc"]) or "body"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


async def _parse(request: Request, model: type[BodyT]) -> BodyT:
    raw = await request.body()
    if not raw.strip():
        raise invalid_request("The request body is missing: a JSON object is required")
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise invalid_request(f"The request body is invalid: {_describe(error)}") from None


# --- minting -------------------------------------------------------------------------------------


def _check_count(kind: str, items: list[Any] | None) -> None:
    if items is not None and len(items) > MAX_ITEMS:
        raise invalid_request(
            f"The request has {len(items)} {kind}; at most {MAX_ITEMS} are allowed"
        )


def _check_identity_shape(identity: EffectiveIdentity) -> None:
    if not identity.username:
        raise invalid_request("An effective identity needs a username")
    if len(identity.username) > MAX_USERNAME_LENGTH:
        raise invalid_request(
            f"The effective identity username is {len(identity.username)} characters long; "
            f"at most {MAX_USERNAME_LENGTH} are allowed"
        )
    roles = identity.roles or []
    if len(roles) > MAX_ITEMS:
        raise invalid_request(
            f"The effective identity has {len(roles)} roles; at most {MAX_ITEMS} are allowed"
        )
    for role in roles:
        if not role or len(role) > MAX_ROLE_LENGTH or "," in role:
            raise invalid_request(
                f"Invalid role name {role[:60]!r}: 1 to {MAX_ROLE_LENGTH} characters, no commas"
            )
    if not identity.datasets:
        raise invalid_request("An effective identity must list the datasets it applies to")
    _check_count("datasets in an effective identity", identity.datasets)


def _check_identities(
    datasets: list[Dataset], identities: list[EffectiveIdentity]
) -> dict[str, EffectiveIdentity]:
    """Power BI's rules: an identity for every RLS dataset, none for the others, roles where
    the dataset requires them. Returns the identity of each dataset that has one."""
    by_id = {dataset.id: dataset for dataset in datasets}
    chosen: dict[str, EffectiveIdentity] = {}
    for identity in identities:
        _check_identity_shape(identity)
        for raw_id in identity.datasets or []:
            dataset_id = raw_id.lower()
            if dataset_id not in by_id:
                raise invalid_request(
                    f"The effective identity names dataset '{raw_id}', which is not part of "
                    "this request"
                )
            if dataset_id in chosen:
                raise invalid_request(
                    f"More than one effective identity was provided for dataset '{dataset_id}'"
                )
            chosen[dataset_id] = identity
    for dataset in datasets:
        found = chosen.get(dataset.id)
        if found is None:
            if dataset.is_effective_identity_required:
                raise invalid_request(
                    f"Creating embed token for accessing dataset {dataset.id} requires "
                    "effective identity to be provided"
                )
            continue
        if not dataset.is_effective_identity_required:
            raise invalid_request(
                f"Creating embed token for accessing dataset {dataset.id} shouldn't have "
                "effective identity"
            )
        roles = found.roles or []
        if dataset.is_effective_identity_roles_required and not roles:
            raise invalid_request(
                f"Creating embed token for accessing dataset {dataset.id} requires roles to be "
                "included in provided effective identity"
            )
        for role in roles:
            if dataset.role(role) is None:
                raise invalid_request(f"Role '{role}' does not exist in dataset {dataset.id}")
    return chosen


def _expiration_text(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _mint(
    request: Request,
    caller: EntraToken,
    *,
    reports: list[tuple[Report, bool]],
    datasets: list[Dataset],
    target_workspaces: list[Workspace],
    identities: list[EffectiveIdentity],
    lifetime_minutes: int | None,
) -> JSONResponse:
    state = get_state(request)
    if lifetime_minutes is not None and lifetime_minutes < 0:
        raise invalid_request("lifetimeInMinutes must be a positive integer (0 means the default)")
    chosen = _check_identities(datasets, identities)

    now = state.now()
    limits = [now + state.settings.token_lifetime_seconds, caller.expires_at]
    if lifetime_minutes:
        limits.append(now + 60.0 * min(lifetime_minutes, MAX_LIFETIME_MINUTES))
    expires_at = math.floor(min(limits))
    token_id = str(uuid.uuid4())
    grouped: dict[int, tuple[EffectiveIdentity, list[str]]] = {}
    for dataset_id, identity in chosen.items():
        grouped.setdefault(id(identity), (identity, []))[1].append(dataset_id)
    identity_claims = [
        {"username": identity.username, "roles": list(identity.roles or []), "datasets": ids}
        for identity, ids in grouped.values()
    ]
    payload = {
        "v": 1,
        "tokenId": token_id,
        "iat": math.floor(now),
        "exp": expires_at,
        "appid": caller.app_id,
        "reports": [{"id": report.id, "allowEdit": edit} for report, edit in reports],
        "datasets": [dataset.id for dataset in datasets],
        "targetWorkspaces": [workspace.id for workspace in target_workspaces],
        "identities": identity_claims,
    }
    token = state.signer.embed_token(payload)
    state.counters.embed_tokens_issued += 1
    base_url = state.base_url(request)
    return JSONResponse(
        {
            "@odata.context": _context(base_url, EMBED_TOKEN_CONTEXT),
            "token": token,
            "tokenId": token_id,
            "expiration": _expiration_text(expires_at),
        }
    )


@router.post("/GenerateToken")
async def generate_token(request: Request) -> JSONResponse:
    """GenerateToken (V2): any reports, datasets and target workspaces, with identities."""
    caller = authenticate(request)
    require_json_body(request)
    state = get_state(request)
    state.counters.generate_token_calls += 1
    body = await _parse(request, GenerateTokenRequestV2)
    _check_count("reports", body.reports)
    _check_count("datasets", body.datasets)
    _check_count("target workspaces", body.targetWorkspaces)
    _check_count("identities", body.identities)
    if not body.reports and not body.datasets and not body.targetWorkspaces:
        raise invalid_request("Specify at least one report, dataset or target workspace")

    content = state.content
    reports: dict[str, tuple[Report, bool]] = {}
    for item in body.reports or []:
        report = content.reports.get(str(item.id))
        if report is None:
            raise not_found(f"Report '{item.id}'")
        previous = reports.get(report.id, (report, False))[1]
        reports[report.id] = (report, previous or bool(item.allowEdit))
    datasets: dict[str, Dataset] = {}
    for dataset_item in body.datasets or []:
        dataset = content.datasets.get(dataset_item.id.lower())
        if dataset is None:
            raise not_found(f"Dataset '{dataset_item.id}'")
        datasets[dataset.id] = dataset
    for report, _ in reports.values():  # a report's own dataset comes with it
        datasets.setdefault(report.dataset_id, content.datasets[report.dataset_id])
    workspace_ids = {r.workspace_id for r, _ in reports.values()}
    workspace_ids.update(dataset.workspace_id for dataset in datasets.values())
    if not all(visible_to(state, caller, workspace_id) for workspace_id in workspace_ids):
        raise not_authorized()
    workspaces: dict[str, Workspace] = {}
    for workspace_item in body.targetWorkspaces or []:
        workspace = content.workspaces.get(str(workspace_item.id))
        if workspace is None:
            raise not_found(f"Workspace '{workspace_item.id}'")
        if not visible_to(state, caller, workspace.id):
            raise not_authorized()
        workspaces[workspace.id] = workspace
    return _mint(
        request,
        caller,
        reports=list(reports.values()),
        datasets=list(datasets.values()),
        target_workspaces=list(workspaces.values()),
        identities=body.identities or [],
        lifetime_minutes=body.lifetimeInMinutes,
    )


@router.post("/groups/{group_id}/reports/{report_id}/GenerateToken")
async def generate_token_for_report(
    group_id: str, report_id: str, request: Request
) -> JSONResponse:
    """Reports GenerateTokenInGroup (V1): one report, View or Edit."""
    caller = authenticate(request)
    require_json_body(request)
    state = get_state(request)
    state.counters.generate_token_calls += 1
    workspace = _workspace(state, group_id, caller)
    report = _report_in(state, workspace, report_id)
    body = await _parse(request, GenerateTokenRequest)
    _check_count("identities", body.identities)
    access = (body.accessLevel or "View").lower()
    if access == "create":
        raise invalid_request(
            "accessLevel 'Create' is for report creation (POST groups/{groupId}/reports/"
            "GenerateToken), not for an existing report"
        )
    if access not in ("view", "edit"):
        raise invalid_request(
            f"Unknown accessLevel '{body.accessLevel}'; expected View, Edit or Create"
        )
    datasets = [state.content.datasets[report.dataset_id]]
    if body.datasetId and body.datasetId.lower() != report.dataset_id:
        datasets.append(_dataset_in(state, workspace, body.datasetId))
    return _mint(
        request,
        caller,
        reports=[(report, access == "edit")],
        datasets=datasets,
        target_workspaces=[],
        identities=body.identities or [],
        lifetime_minutes=body.lifetimeInMinutes,
    )
