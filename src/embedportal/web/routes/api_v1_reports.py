"""`/api/v1/reports`: the report catalogue, and who may open each report with which RLS roles
(docs/integration-api.md). Grants go through the services and checks Admin → Reports uses,
the RLS try-out included; the people a grant concerns are told at once."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, model_validator

from embedportal.access.api_keys import ApiCaller
from embedportal.access.audit import through_api_key
from embedportal.access.catalogue import catalogue_reports
from embedportal.access.grants import (
    GrantInputError,
    grant_report,
    grants_of,
    parse_roles,
    revoke_grant,
)
from embedportal.access.rls_check import grant_trials
from embedportal.db.models import Group, Report, ReportGrant, User
from embedportal.i18n import _
from embedportal.web.api_auth import require_scope
from embedportal.web.api_v1 import (
    COMMON_ERRORS,
    MAX_ID,
    ApiError,
    ApiModel,
    not_found,
    require_also,
)
from embedportal.web.deps import AppSettings, DbSession, PowerBIClientsDep, PushHubDep
from embedportal.web.push import notify_access_changed
from embedportal.web.rls_checks import roles_refused
from embedportal.web.routes.admin_reports import _affected_user_ids

router = APIRouter(
    prefix="/api/v1/reports", tags=["integration: reports and grants"], responses=COMMON_ERRORS
)

ReportId = Annotated[str, Path(min_length=1, max_length=64)]
GrantId = Annotated[int, Path(ge=1, le=MAX_ID)]
ReportsRead = Annotated[ApiCaller, require_scope("reports:read")]
GrantsRead = Annotated[ApiCaller, require_scope("grants:read")]
GrantsWrite = Annotated[ApiCaller, require_scope("grants:write")]


class ReportOut(BaseModel):
    id: str = Field(examples=["6f7c1c37-0000-4000-8000-00000000ab01"])
    name: str = Field(examples=["Sales Overview"])
    workspace_id: str
    dataset_id: str
    rls_required: bool = Field(description="The dataset needs an RLS identity to be shown.")
    rls_roles_required: bool = Field(description="That identity must name at least one role.")
    capacity_id: str | None
    available: bool = Field(description="False: gone from Power BI at the last sync.")

    @classmethod
    def of(cls, report: Report) -> ReportOut:
        return cls(
            id=report.id,
            name=report.name,
            workspace_id=report.workspace_id,
            dataset_id=report.dataset_id,
            rls_required=report.rls_required,
            rls_roles_required=report.rls_roles_required,
            capacity_id=report.capacity_id,
            available=report.is_available,
        )


class ReportList(BaseModel):
    items: list[ReportOut]
    total: int


class GrantOut(BaseModel):
    id: int = Field(examples=[3])
    report_id: str
    user_id: int | None = Field(examples=[42])
    user_email: str | None = Field(examples=["ana@example.com"])
    group_id: int | None = Field(examples=[None])
    group_name: str | None = Field(examples=[None])
    rls_roles: list[str] = Field(examples=[["North"]])
    created_at: datetime

    @classmethod
    def of(cls, grant: ReportGrant) -> GrantOut:
        return cls(
            id=grant.id,
            report_id=grant.report_id,
            user_id=grant.user_id,
            user_email=grant.user.email if grant.user is not None else None,
            group_id=grant.group_id,
            group_name=grant.group.name if grant.group is not None else None,
            rls_roles=list(grant.rls_roles or []),
            created_at=grant.created_at,
        )


class GrantList(BaseModel):
    items: list[GrantOut]
    total: int


class GrantCreate(ApiModel):
    """Grant the report to a user or a group (one of them), with RLS roles."""

    user_id: int | None = Field(None, ge=1, le=MAX_ID, examples=[42])
    group_id: int | None = Field(None, ge=1, le=MAX_ID, examples=[None])
    rls_roles: list[str] = Field(default_factory=list, max_length=60, examples=[["North"]])
    save_unchecked: bool = Field(
        False,
        description="Save even when Power BI cannot be asked to try the roles (a refusal by "
        "Power BI is never saved).",
    )

    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"user_id": 42, "rls_roles": ["North"]}]},
    }

    @model_validator(mode="after")
    def _one_of(self) -> GrantCreate:
        if (self.user_id is None) == (self.group_id is None):
            raise ValueError("give either user_id or group_id")
        return self


def _report_or_404(db: DbSession, report_id: str) -> Report:
    report = db.get(Report, report_id)
    if report is None:
        raise not_found(_("There is no such report."))
    return report


@router.get("", response_model=ReportList)
def list_reports(db: DbSession, _caller: ReportsRead) -> ReportList:
    """The catalogue: available reports first, each by name."""
    reports = catalogue_reports(session=db)
    return ReportList(items=[ReportOut.of(report) for report in reports], total=len(reports))


@router.get("/{report_id}", response_model=ReportOut)
def get_report(db: DbSession, _caller: ReportsRead, report_id: ReportId) -> ReportOut:
    return ReportOut.of(_report_or_404(db, report_id))


@router.get("/{report_id}/grants", response_model=GrantList)
def list_grants(db: DbSession, _caller: GrantsRead, report_id: ReportId) -> GrantList:
    """Who may open the report: groups first, then users."""
    grants = grants_of(session=db, report=_report_or_404(db, report_id))
    return GrantList(items=[GrantOut.of(grant) for grant in grants], total=len(grants))


@router.post(
    "/{report_id}/grants",
    response_model=GrantOut,
    status_code=201,
    responses={200: {"model": GrantOut, "description": "Granted already: its roles are set"}},
)
def add_grant(
    db: DbSession,
    settings: AppSettings,
    clients: PowerBIClientsDep,
    hub: PushHubDep,
    caller: GrantsWrite,
    report_id: ReportId,
    body: GrantCreate,
) -> Response:
    """Let the user or group open the report with these RLS roles; granting again sets the
    roles (200). The roles are tried with Power BI first, as Admin → Reports does."""
    report = _report_or_404(db, report_id)
    if body.rls_roles:
        require_also(caller, "rls:write")
    user = db.get(User, body.user_id) if body.user_id is not None else None
    group = db.get(Group, body.group_id) if body.group_id is not None else None
    if user is None and group is None:
        raise not_found(
            _("There is no such user.")
            if body.user_id is not None
            else _("There is no such group.")
        )
    try:
        roles = parse_roles(body.rls_roles)
    except GrantInputError as problem:
        raise ApiError(400, "InvalidInput", str(problem)) from None
    existed = any(
        (user is not None and grant.user_id == user.id)
        or (group is not None and grant.group_id == group.id)
        for grant in grants_of(session=db, report=report)
    )
    trials = grant_trials(
        session=db, report=report, roles=roles, user=user, group=group, actor=None
    )
    refusal = roles_refused(
        session=db,
        settings=settings,
        clients=clients,
        trials=trials,
        save_unchecked=body.save_unchecked,
    )
    if refusal is not None:
        code = "RlsCheckUnavailable" if refusal.unchecked else "RlsRolesRefused"
        raise ApiError(400, code, refusal.reason)
    with through_api_key(caller.name):
        try:
            grant = grant_report(
                session=db, report=report, user=user, group=group, roles=roles, actor=None
            )
        except GrantInputError as problem:
            raise ApiError(400, "InvalidInput", str(problem)) from None
    affected = _affected_user_ids(db, grant)
    db.commit()
    notify_access_changed(hub, affected)
    return JSONResponse(
        GrantOut.of(grant).model_dump(mode="json"), status_code=200 if existed else 201
    )


@router.delete("/{report_id}/grants/{grant_id}", status_code=204, response_class=Response)
def remove_grant(
    db: DbSession, hub: PushHubDep, caller: GrantsWrite, report_id: ReportId, grant_id: GrantId
) -> Response:
    """Remove the grant: its user (or the group's members) can no longer open the report
    through it, and their open viewers are told at once."""
    report = _report_or_404(db, report_id)
    grant = db.get(ReportGrant, grant_id)
    if grant is None or grant.report_id != report.id:
        raise not_found(_("There is no such grant."))
    affected = _affected_user_ids(db, grant)
    with through_api_key(caller.name):
        revoke_grant(session=db, grant=grant, actor=None)
    db.commit()
    notify_access_changed(hub, affected)
    return Response(status_code=204)
