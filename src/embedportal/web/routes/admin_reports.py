"""Admin → Reports: sync the catalogue from Power BI, and say who may open which report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from embedportal.access.catalogue import Catalogue, SyncResult, apply_catalogue, fetch_catalogue
from embedportal.access.embedding import (
    AS_ORGANIZATION,
    EmbeddingInputError,
    embedding_of,
    organization_default,
    set_report_embedding,
)
from embedportal.access.grants import (
    GrantInputError,
    grant_report,
    grants_of,
    parse_roles,
    revoke_grant,
    set_grant_roles,
)
from embedportal.access.organization import PowerBIClients, effective_connection, get_organization
from embedportal.access.rls_check import RlsTrial, grant_trials, roles_in_use
from embedportal.db.models import Group, GroupMembership, Report, ReportGrant, User
from embedportal.i18n import N_, _
from embedportal.powerbi import PowerBIError
from embedportal.settings import Settings
from embedportal.web.deps import (
    AdminUser,
    AppSettings,
    CsrfProtected,
    DbSession,
    IsHtmx,
    PowerBIClientsDep,
    PushHubDep,
    stored_or_404,
)
from embedportal.web.forms import MAX_ID, GrantForm, GrantRolesForm, ReportEmbeddingForm
from embedportal.web.push import PushEvent, PushHub, notify_access_changed
from embedportal.web.rls_checks import roles_refused
from embedportal.web.templating import flash_redirect, render

logger = logging.getLogger("embedportal.web")
router = APIRouter(prefix="/admin/reports", tags=["admin"])


def admin_report(report_id: str, _admin: AdminUser, db: DbSession) -> Report:
    """Any report of the catalogue, available or not (admins manage both)."""
    return stored_or_404(db.get(Report, report_id), N_("There is no such report."))


AdminReport = Annotated[Report, Depends(admin_report)]


# Beyond a 32-bit integer an id is no row of ours; the database is never asked (it would overflow).
GrantId = Annotated[int, Path(ge=1, le=MAX_ID)]


def report_grant(grant_id: GrantId, report: AdminReport, db: DbSession) -> ReportGrant:
    grant = db.get(ReportGrant, grant_id)
    if grant is None or grant.report_id != report.id:
        raise HTTPException(status_code=404, detail=_("There is no such grant."))
    return grant


ReportGrantOf = Annotated[ReportGrant, Depends(report_grant)]


def _access_changed(db: Session, hub: PushHub, affected: list[int]) -> None:
    """Commit a grant's change, then tell the people it affects (their viewers re-check)."""
    db.commit()
    notify_access_changed(hub, affected)


def _grant_counts(db: Session) -> dict[str, int]:
    rows = db.execute(select(ReportGrant.report_id, func.count()).group_by(ReportGrant.report_id))
    return {str(report_id): int(count) for report_id, count in rows}


@router.get("", response_class=HTMLResponse)
def reports_admin_page(
    request: Request, _admin: AdminUser, db: DbSession, settings: AppSettings
) -> HTMLResponse:
    reports = list(db.scalars(select(Report).order_by(Report.is_available.desc(), Report.name)))
    connection = effective_connection(session=db, settings=settings)
    return render(
        request,
        "admin/reports.html",
        {"reports": reports, "grant_counts": _grant_counts(db), "connection": connection},
    )


@router.post("/sync", dependencies=[CsrfProtected])
async def sync_reports(
    request: Request,
    admin: AdminUser,
    db: DbSession,
    settings: AppSettings,
    clients: PowerBIClientsDep,
    hub: PushHubDep,
) -> Response:
    connection = effective_connection(session=db, settings=settings)
    if not connection.ready or connection.connection is None:
        message = _(
            "Cannot sync: %(problem)s Set the Power BI connection in Admin → Settings.",
            problem=_(connection.problem or "The Power BI connection is incomplete."),
        )
        return flash_redirect(request, "/admin/reports", message, category="error")
    try:
        catalogue = await fetch_catalogue(
            client=clients.get(connection.connection), workspace_id=connection.workspace_id
        )
    except PowerBIError as error:
        logger.warning("catalogue sync failed: %s", error)
        message = _(
            "Sync failed: %(reason)s Check the connection in Admin → Settings.",
            reason=error.message,
        )
        return flash_redirect(request, "/admin/reports", message, category="error")
    result = await run_in_threadpool(_apply, db, catalogue, admin)
    if result.removed:
        # Reports gone from Power BI close wherever they are open; every viewer re-checks once.
        hub.publish(PushEvent(kind="access"))
    message = _(
        "Synced from Power BI: %(added)s added, %(updated)s updated, %(removed)s removed.",
        added=result.added,
        updated=result.updated,
        removed=result.removed,
    )
    return flash_redirect(request, "/admin/reports", message)


def _apply(db: Session, catalogue: Catalogue, admin: User) -> SyncResult:
    result = apply_catalogue(session=db, catalogue=catalogue, actor=admin)
    db.commit()
    return result


def _grantee_choices(db: Session) -> tuple[list[User], list[Group]]:
    users = list(db.scalars(select(User).order_by(User.email)))
    groups = list(db.scalars(select(Group).order_by(Group.name)))
    return users, groups


def _grants_context(
    db: Session,
    report: Report,
    *,
    error: str | None = None,
    message: str | None = None,
    form: GrantForm | None = None,
    roles_form: tuple[int, GrantRolesForm] | None = None,
    unchecked: bool = False,
) -> dict[str, object]:
    """``roles_form``: a grant's roles form as posted (refused: shown again as typed);
    ``unchecked``: the RLS check could not run, so the posted form offers to save anyway."""
    users, groups = _grantee_choices(db)
    organization = get_organization(session=db)
    return {
        "report": report,
        "embedding": embedding_of(report=report, organization=organization),
        "default_embedding": organization_default(organization),
        "embedding_choice": report.embedding or AS_ORGANIZATION,
        "grants": grants_of(session=db, report=report),
        "users": users,
        "groups": groups,
        "grant_error": error,
        "grant_message": message,
        "grant_form": form or GrantForm(),
        "roles_form": roles_form,
        "rls_unchecked": unchecked,
        "role_choices": roles_in_use(session=db, dataset_id=report.dataset_id)
        if report.rls_required
        else [],
    }


def _grants_answer(
    request: Request,
    db: Session,
    report: Report,
    *,
    htmx: bool,
    message: str,
    error: str | None = None,
    form: GrantForm | None = None,
    roles_form: tuple[int, GrantRolesForm] | None = None,
    unchecked: bool = False,
) -> Response:
    """htmx gets the refreshed partial; a plain form post gets 303 back to the report page."""
    if htmx:
        context = _grants_context(
            db,
            report,
            error=error,
            message=None if error else message,
            form=form,
            roles_form=roles_form,
            unchecked=unchecked,
        )
        return render(
            request, "admin/_report_grants.html", context, status_code=400 if error else 200
        )
    if error:
        context = _grants_context(
            db, report, error=error, form=form, roles_form=roles_form, unchecked=unchecked
        )
        return render(request, "admin/report.html", context, status_code=400)
    return flash_redirect(request, f"/admin/reports/{report.id}", message)


@router.get("/{report_id}", response_class=HTMLResponse)
def report_admin_page(request: Request, report: AdminReport, db: DbSession) -> HTMLResponse:
    return render(request, "admin/report.html", _grants_context(db, report))


@router.post("/{report_id}/embedding", dependencies=[CsrfProtected])
def change_embedding(
    request: Request,
    report: AdminReport,
    admin: AdminUser,
    db: DbSession,
    hub: PushHubDep,
    form: Annotated[ReportEmbeddingForm, Form()],
) -> Response:
    """App-owned, user-owned, or as the organization: the report's open viewers switch over."""
    try:
        changed = set_report_embedding(
            session=db, report=report, choice=form.embedding, actor=admin
        )
    except EmbeddingInputError as problem:
        context = {**_grants_context(db, report), "embedding_error": _(str(problem))}
        return render(request, "admin/report.html", context, status_code=400)
    if not changed:
        return flash_redirect(
            request, f"/admin/reports/{report.id}", _("Nothing changed."), category="info"
        )
    db.commit()
    # Its open viewers ask for a token again, get the other kind, and embed the report anew.
    hub.publish(PushEvent(kind="access"))
    return flash_redirect(
        request, f"/admin/reports/{report.id}", _("How the report is embedded is saved.")
    )


@router.get("/{report_id}/grants", response_class=HTMLResponse)
def report_grants_partial(request: Request, report: AdminReport, db: DbSession) -> HTMLResponse:
    return render(request, "admin/_report_grants.html", _grants_context(db, report))


def _affected_user_ids(db: Session, grant: ReportGrant) -> list[int]:
    if grant.user_id is not None:
        return [grant.user_id]
    return list(
        db.scalars(
            select(GroupMembership.user_id).where(GroupMembership.group_id == grant.group_id)
        )
    )


@router.post("/{report_id}/grants", dependencies=[CsrfProtected])
def add_grant(
    request: Request,
    report: AdminReport,
    admin: AdminUser,
    db: DbSession,
    settings: AppSettings,
    clients: PowerBIClientsDep,
    hub: PushHubDep,
    htmx: IsHtmx,
    form: Annotated[GrantForm, Form()],
) -> Response:
    user_id, group_id = form.grantee_id("user"), form.grantee_id("group")
    user = db.get(User, user_id) if user_id is not None else None
    group = db.get(Group, group_id) if group_id is not None else None
    if user is None and group is None:
        error = _("Choose a user or a group to grant the report to.")
        return _grants_answer(request, db, report, htmx=htmx, message="", error=error, form=form)
    try:
        roles = parse_roles(form.rls_roles)
    except GrantInputError as problem:
        return _grants_answer(
            request, db, report, htmx=htmx, message="", error=_(str(problem)), form=form
        )
    trials = grant_trials(
        session=db, report=report, roles=roles, user=user, group=group, actor=admin
    )
    refusal = _roles_refusal(
        request, db, report, settings, clients, trials, form.save_unchecked, htmx, {"form": form}
    )
    if refusal is not None:
        return refusal
    try:
        grant = grant_report(
            session=db, report=report, user=user, group=group, roles=roles, actor=admin
        )
    except GrantInputError as problem:
        return _grants_answer(
            request, db, report, htmx=htmx, message="", error=_(str(problem)), form=form
        )
    _access_changed(db, hub, _affected_user_ids(db, grant))
    who = group.name if group is not None else user.email if user is not None else ""
    message = _("%(report)s granted to %(who)s.", report=report.name, who=who)
    return _grants_answer(request, db, report, htmx=htmx, message=message)


def _roles_refusal(
    request: Request,
    db: Session,
    report: Report,
    settings: Settings,
    clients: PowerBIClients,
    trials: Sequence[RlsTrial],
    save_unchecked: bool,
    htmx: bool,
    shown: dict[str, Any],
) -> Response | None:
    """The grants section again with Power BI's refusal of the roles (or "could not check"),
    the typed form in ``shown``; None when the roles may be saved."""
    refused = roles_refused(
        session=db, settings=settings, clients=clients, trials=trials, save_unchecked=save_unchecked
    )
    if refused is None:
        return None
    return _grants_answer(
        request,
        db,
        report,
        htmx=htmx,
        message="",
        error=refused.reason,
        unchecked=refused.unchecked,
        **shown,
    )


@router.post("/{report_id}/grants/{grant_id}/roles", dependencies=[CsrfProtected])
def change_grant_roles(
    request: Request,
    report: AdminReport,
    grant: ReportGrantOf,
    admin: AdminUser,
    db: DbSession,
    settings: AppSettings,
    clients: PowerBIClientsDep,
    hub: PushHubDep,
    htmx: IsHtmx,
    form: Annotated[GrantRolesForm, Form()],
) -> Response:
    typed = (grant.id, form)
    try:
        roles = parse_roles(form.rls_roles)
    except GrantInputError as problem:
        return _grants_answer(
            request, db, report, htmx=htmx, message="", error=_(str(problem)), roles_form=typed
        )
    trials = grant_trials(session=db, report=report, roles=roles, grant=grant, actor=admin)
    refusal = _roles_refusal(
        request,
        db,
        report,
        settings,
        clients,
        trials,
        form.save_unchecked,
        htmx,
        {"roles_form": typed},
    )
    if refusal is not None:
        return refusal
    set_grant_roles(session=db, grant=grant, roles=roles, actor=admin)
    _access_changed(db, hub, _affected_user_ids(db, grant))
    return _grants_answer(request, db, report, htmx=htmx, message=_("RLS roles saved."))


@router.get("/{report_id}/grants/{grant_id}/remove")
def confirm_remove_grant(request: Request, grant: ReportGrantOf, _admin: AdminUser) -> Response:
    """The question before a removal, for a browser without JavaScript (htmx asks in place)."""
    return render(
        request, "admin/report_grant_remove.html", {"report": grant.report, "grant": grant}
    )


@router.post("/{report_id}/grants/{grant_id}/delete", dependencies=[CsrfProtected])
def remove_grant(
    request: Request,
    grant: ReportGrantOf,  # of the path's report, for an administrator (checked first)
    admin: AdminUser,
    db: DbSession,
    hub: PushHubDep,
    htmx: IsHtmx,
) -> Response:
    report = grant.report
    affected = _affected_user_ids(db, grant)
    revoke_grant(session=db, grant=grant, actor=admin)
    _access_changed(db, hub, affected)
    return _grants_answer(request, db, report, htmx=htmx, message=_("Access removed."))
