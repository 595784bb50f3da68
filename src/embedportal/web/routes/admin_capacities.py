"""Admin → Capacities: the capacities Power BI lists, where each lives in Azure, turning them
on and off by hand, their idle pause and weekly schedule, their hours and estimated cost, and
the capacity audit with its CSV export."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from embedportal.access.audit_log import organization_zone
from embedportal.access.organization import effective_connection
from embedportal.capacity import audit_log as capacity_audit
from embedportal.capacity.administration import (
    FIELD_COPY_FROM,
    FIELD_COPY_TO,
    ScheduleInputError,
    capacity_cost,
    copy_schedule_day,
    parse_sku_choice,
    price_override,
    provider_of,
    save_schedule,
    schedule_errors,
    schedule_of,
    sku_choices,
    update_capacity_settings,
)
from embedportal.capacity.control import (
    CapacityBusyError,
    CapacityControl,
    CapacityNotConfiguredError,
    CapacityStatus,
)
from embedportal.capacity.decisions import Action, CapacityState, Reason
from embedportal.capacity.inventory import (
    CapacityInputError,
    CapacityInventory,
    CapacitySyncResult,
    UnknownCapacityError,
    apply_capacity_inventory,
    configure_capacity,
    fetch_capacity_inventory,
    get_capacity,
)
from embedportal.capacity.prices import is_known_sku, sku_info
from embedportal.capacity.reporting import CostReport
from embedportal.capacity.schedule import (
    FIELD_ROWS,
    FieldError,
    ScheduleAction,
    evaluate_schedule,
    format_schedule_rows,
)
from embedportal.db.base import utcnow
from embedportal.db.models import Capacity, CapacityEvent, Report, User
from embedportal.i18n import N_, _
from embedportal.powerbi import FABRIC, POWERBI_DEDICATED, PowerBIError
from embedportal.settings import Settings
from embedportal.web.deps import (
    AdminUser,
    AppSettings,
    CapacityControlDep,
    CsrfProtected,
    DbSession,
    IsHtmx,
    PowerBIClientsDep,
    stored_or_404,
)
from embedportal.web.forms import (
    CapacityAuditQuery,
    CapacityAzureForm,
    CapacitySettingsForm,
    ScheduleForm,
    SkuForm,
)
from embedportal.web.paging import Page
from embedportal.web.templating import flash_redirect, render

logger = logging.getLogger("embedportal.web")
router = APIRouter(prefix="/admin/capacities", tags=["admin"], include_in_schema=False)

# Blank rows under the schedule, so a browser without JavaScript can add rows too.
SPARE_SCHEDULE_ROWS = 3
# A failed operation stays on the capacity's page this long after it happened.
SHOW_FAILURE_FOR = timedelta(hours=1)

CapacityId = Annotated[str, Path(min_length=1, max_length=64)]


def admin_capacity(capacity_id: CapacityId, _admin: AdminUser, db: DbSession) -> Capacity:
    capacity = get_capacity(session=db, capacity_id=capacity_id)
    return stored_or_404(capacity, N_("There is no such capacity."))


AdminCapacity = Annotated[Capacity, Depends(admin_capacity)]


# --- the live state ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveState:
    """What ARM says of the capacity now (None when it cannot be asked), and why not."""

    status: CapacityStatus | None
    unavailable: str | None = None


async def _live_state(control: CapacityControl, capacity: Capacity) -> LiveState:
    if not capacity.is_configured:
        return LiveState(status=None, unavailable=_("Not configured"))
    try:
        return LiveState(status=await control.status(capacity_id=capacity.id))
    except CapacityNotConfiguredError:
        return LiveState(
            status=None,
            unavailable=_("The Power BI connection is incomplete: set it in Admin → Settings."),
        )


def _cached_state(control: CapacityControl, capacity: Capacity) -> LiveState:
    """The last state read, for pages drawn without asking ARM (a refused form); the page's
    polling brings a fresh one."""
    if not capacity.is_configured:
        return LiveState(status=None, unavailable=_("Not configured"))
    return LiveState(status=control.cached_status(capacity.id))


_OPERATION_WORDS = {
    "resume": N_("Starting"),
    "suspend": N_("Pausing"),
    "change_sku": N_("Changing the SKU"),
}
_CHANGING = N_("Changing")  # an ARM state this portal has no word for
_ARM_WORDS = {
    "Resuming": N_("Starting"),
    "Suspending": N_("Pausing"),
    "Pausing": N_("Pausing"),
    "Scaling": N_("Changing the SKU"),
    "Updating": N_("Updating"),
    "Provisioning": N_("Being set up"),
    "Preparing": N_("Being set up"),
    "Deleting": N_("Being deleted"),
}


def state_words(live: LiveState) -> tuple[str, str]:
    """(a person's word for the state, the badge's kind: ok, off, busy, unknown)."""
    status = live.status
    if status is None:
        return (live.unavailable or _("Reading the state…")), "unknown"
    if status.operation in _OPERATION_WORDS:
        return _(_OPERATION_WORDS[status.operation]), "busy"
    if status.state is CapacityState.RUNNING:
        return _("Running"), "ok"
    if status.state is CapacityState.PAUSED:
        return _("Paused"), "off"
    if status.state is CapacityState.TRANSITIONING:
        return _(_ARM_WORDS.get(status.arm_state, _CHANGING)), "busy"
    return _("Unknown"), "unknown"


def _last_event(db: Session, capacity: Capacity) -> CapacityEvent | None:
    return db.scalars(
        select(CapacityEvent)
        .where(CapacityEvent.capacity_id == capacity.id)
        .order_by(CapacityEvent.at.desc(), CapacityEvent.id.desc())
        .limit(1)
    ).first()


def _state_context(db: Session, capacity: Capacity, live: LiveState) -> dict[str, Any]:
    last_event = _last_event(db, capacity)
    failure = (
        last_event
        if last_event is not None
        and capacity_audit.is_failure(last_event)
        and utcnow() - last_event.at < SHOW_FAILURE_FOR
        else None
    )
    words, kind = state_words(live)
    return {
        "capacity": capacity,
        "live": live,
        "state_words": words,
        "state_kind": kind,
        "last_event": last_event,
        "failure": failure,
        "describe_event": capacity_audit.describe_event,
        "zone": organization_zone(session=db),
    }


# --- the list ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapacityRow:
    capacity: Capacity
    # Workspace id → the names of its reports on this capacity.
    workspaces: dict[str, list[str]]


def _list_rows(db: Session, q: str) -> list[CapacityRow]:
    search = q.strip().lower()
    capacities = [
        capacity
        for capacity in db.scalars(select(Capacity).order_by(Capacity.display_name, Capacity.id))
        if search in capacity.display_name.lower() or search in capacity.id
    ]
    reports = db.scalars(
        select(Report)
        .where(Report.capacity_id.in_([c.id for c in capacities]), Report.is_available)
        .order_by(Report.name)
    )
    on: dict[str, dict[str, list[str]]] = {capacity.id: {} for capacity in capacities}
    for report in reports:
        if report.capacity_id is not None:
            on[report.capacity_id].setdefault(report.workspace_id, []).append(report.name)
    return [CapacityRow(capacity=c, workspaces=on[c.id]) for c in capacities]


async def _list_context(
    db: Session, control: CapacityControl, settings: Settings, q: str
) -> dict[str, Any]:
    rows = await run_in_threadpool(_list_rows, db, q)
    # Every capacity's state at once: each is one ARM call, remembered for a few seconds.
    states = await asyncio.gather(*(_live_state(control, row.capacity) for row in rows))
    connection = await run_in_threadpool(effective_connection, session=db, settings=settings)
    return {
        "rows": rows,
        "states": {
            row.capacity.id: state_words(live) for row, live in zip(rows, states, strict=True)
        },
        "q": q,
        "connection": connection,
    }


@router.get("")
async def capacities_page(
    request: Request,
    db: DbSession,
    _admin: AdminUser,
    control: CapacityControlDep,
    settings: AppSettings,
    q: Annotated[str, Query(max_length=300)] = "",
) -> Response:
    context = await _list_context(db, control, settings, q)
    return render(request, "admin/capacities.html", context)


@router.get("/rows")
async def capacities_rows(
    request: Request,
    db: DbSession,
    _admin: AdminUser,
    control: CapacityControlDep,
    settings: AppSettings,
    q: Annotated[str, Query(max_length=300)] = "",
) -> Response:
    """The list alone: the htmx target of the name filter."""
    context = await _list_context(db, control, settings, q)
    return render(request, "admin/_capacities_table.html", context)


def _apply_inventory(
    db: Session, inventory: CapacityInventory, settings: Settings, admin: User
) -> CapacitySyncResult:
    result = apply_capacity_inventory(
        session=db, inventory=inventory, settings=settings, actor=admin
    )
    db.commit()
    return result


@router.post("/reload", dependencies=[CsrfProtected])
async def reload_capacities(
    request: Request,
    db: DbSession,
    admin: AdminUser,
    settings: AppSettings,
    clients: PowerBIClientsDep,
) -> Response:
    """ "Reload from Power BI": the capacities, and which capacity each report's workspace is on."""
    connection = await run_in_threadpool(effective_connection, session=db, settings=settings)
    if connection.connection is None:
        message = _(
            "Cannot reload: %(problem)s Set the Power BI connection in Admin → Settings.",
            problem=_(connection.problem or "The Power BI connection is incomplete."),
        )
        return flash_redirect(request, "/admin/capacities", message, category="error")
    try:
        inventory = await fetch_capacity_inventory(client=clients.get(connection.connection))
    except PowerBIError as error:
        logger.warning("capacity reload failed: %s", error)
        message = _(
            "Power BI did not give the capacities: %(reason)s Check the connection in "
            "Admin → Settings, and that the service principal is an administrator of the "
            "capacities.",
            reason=error.message,
        )
        return flash_redirect(request, "/admin/capacities", message, category="error")
    result = await run_in_threadpool(_apply_inventory, db, inventory, settings, admin)
    message = _(
        "Reloaded from Power BI: %(count)s capacities (%(added)s new, %(updated)s changed); "
        "%(reports)s reports moved to another capacity.",
        count=len(result.capacity_ids),
        added=result.added,
        updated=result.updated,
        reports=result.reports_updated,
    )
    return flash_redirect(request, "/admin/capacities", message)


# --- the capacity audit --------------------------------------------------------------------------

AuditQuery = Annotated[CapacityAuditQuery, Query()]


def _audit_context(db: Session, query: CapacityAuditQuery) -> tuple[dict[str, Any], int]:
    filters, errors = capacity_audit.parse_event_filters(**query.filter_fields())
    zone = organization_zone(session=db)
    page = Page.asked(query.page)
    result = capacity_audit.search_capacity_events(
        session=db, filters=filters, zone=zone, offset=page.offset, limit=page.size
    )
    shown = {key: value for key, value in query.filter_fields().items() if value}
    context = {
        "events": result.events,
        **page.pager(result.total),
        "filters": query,
        "filter_query": urlencode(shown),
        "errors": {field: _(message) for field, message in errors.items()},
        "names": capacity_audit.capacity_names(session=db),
        "actions": [(a, capacity_audit.action_name(a)) for a in capacity_audit.ACTIONS],
        "reasons": [(r, capacity_audit.reason_name(r)) for r in capacity_audit.REASONS],
        "describe_event": capacity_audit.describe_event,
        "reason_name": capacity_audit.reason_name,
        "is_failure": capacity_audit.is_failure,
        "zone": zone,
    }
    return context, 400 if errors else 200


def _audit_answer(
    request: Request, db: Session, query: CapacityAuditQuery, template: str
) -> Response:
    context, status = _audit_context(db, query)
    return render(request, template, context, status_code=status)


@router.get("/audit")
def capacity_audit_page(
    request: Request, db: DbSession, _admin: AdminUser, query: AuditQuery
) -> Response:
    return _audit_answer(request, db, query, "admin/capacities_audit.html")


@router.get("/audit/rows")
def capacity_audit_rows(
    request: Request, db: DbSession, _admin: AdminUser, query: AuditQuery
) -> Response:
    """The table alone: the htmx target of the filters."""
    return _audit_answer(request, db, query, "admin/_capacities_audit_table.html")


@router.get("/audit.csv")
def capacity_audit_csv(
    request: Request, db: DbSession, _admin: AdminUser, query: AuditQuery
) -> Response:
    """Every entry the filters match (all pages), as CSV."""
    filters, errors = capacity_audit.parse_event_filters(**query.filter_fields())
    if errors:
        context, status = _audit_context(db, query)
        return render(request, "admin/capacities_audit.html", context, status_code=status)
    zone = organization_zone(session=db)
    result = capacity_audit.search_capacity_events(
        session=db, filters=filters, zone=zone, limit=None
    )
    text = capacity_audit.events_csv(
        events=result.events, names=capacity_audit.capacity_names(session=db), zone=zone
    )
    # The byte-order mark makes spreadsheet programs read the file as UTF-8 (accents in names).
    return Response(
        content=("\ufeff" + text).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="capacity-audit.csv"'},
    )


# --- one capacity --------------------------------------------------------------------------------

_WEEKDAYS = (
    N_("Monday"),
    N_("Tuesday"),
    N_("Wednesday"),
    N_("Thursday"),
    N_("Friday"),
    N_("Saturday"),
    N_("Sunday"),
)
_SCHEDULE_ACTIONS = {
    ScheduleAction.TURN_ON: N_("Turn on"),
    ScheduleAction.TURN_OFF: N_("Turn off"),
    ScheduleAction.CHANGE_SKU: N_("Change the SKU"),
}


def weekday_options() -> list[tuple[str, str]]:
    return [(str(number), _(name)) for number, name in enumerate(_WEEKDAYS)]


def _schedule_context(
    db: Session,
    capacity: Capacity,
    zone: ZoneInfo,
    form: ScheduleForm | None,
    errors: Sequence[FieldError],
) -> dict[str, Any]:
    schedule = schedule_of(session=db, capacity=capacity)
    if form is None:
        form = ScheduleForm.of_rows(
            format_schedule_rows(schedule=schedule), spare=SPARE_SCHEDULE_ROWS
        )
    by_row, whole = schedule_errors(errors)
    upcoming = evaluate_schedule(schedule=schedule, zone=zone, at=utcnow()).next_transition
    return {
        "schedule_form": form,
        "schedule_rows": form.rows(),
        "row_errors": {
            row: {field: error.text(_) for field, error in fields.items()}
            for row, fields in by_row.items()
        },
        "schedule_errors": {
            field: error.text(_)
            for field, error in whole.items()
            if field in (FIELD_ROWS, FIELD_COPY_FROM, FIELD_COPY_TO)
        },
        "weekdays": weekday_options(),
        "sku_options": [(sku.name, sku.name) for sku in sku_choices(capacity)],
        "zone": zone,
        "schedule_actions": [
            (action.value, _(words)) for action, words in _SCHEDULE_ACTIONS.items()
        ],
        "next_change": upcoming,
        "next_change_at": None if upcoming is None else upcoming.at.astimezone(zone),
        "weekday_name": lambda number: _(_WEEKDAYS[number]),
        "action_words": lambda action: _(_SCHEDULE_ACTIONS[ScheduleAction(action)]),
    }


def _chart_data(report: CostReport) -> dict[str, Any]:
    return {
        "labels": [day.day.isoformat() for day in report.days],
        "hours": [float(day.hours) for day in report.days],
        "cost": [None if day.cost is None else float(day.cost) for day in report.days],
        "hoursLabel": _("Hours running"),
        "costLabel": _("Estimated cost (USD)"),
    }


def _page_context(
    db: Session,
    capacity: Capacity,
    live: LiveState,
    *,
    azure_form: CapacityAzureForm | None = None,
    azure_errors: dict[str, str] | None = None,
    settings_form: CapacitySettingsForm | None = None,
    settings_errors: dict[str, str] | None = None,
    schedule_form: ScheduleForm | None = None,
    schedule_field_errors: Sequence[FieldError] = (),
    sku_form: SkuForm | None = None,
    sku_error: str | None = None,
) -> dict[str, Any]:
    zone = organization_zone(session=db)
    now = utcnow()
    cost = capacity_cost(session=db, capacity=capacity, zone=zone, now=now)
    reports = list(
        db.scalars(
            select(Report)
            .where(Report.capacity_id == capacity.id, Report.is_available)
            .order_by(Report.workspace_id, Report.name)
        )
    )
    workspaces: dict[str, list[Report]] = {}
    for report in reports:
        workspaces.setdefault(report.workspace_id, []).append(report)
    list_price = (
        sku_info(name=capacity.sku).estimated_hourly_usd
        if is_known_sku(name=capacity.sku)
        else None
    )
    provider = provider_of(capacity)
    return {
        **_state_context(db, capacity, live),
        **_schedule_context(db, capacity, zone, schedule_form, schedule_field_errors),
        "azure": azure_form or CapacityAzureForm.of(capacity),
        "azure_errors": {f: _(m) for f, m in (azure_errors or {}).items()},
        "providers": [
            (POWERBI_DEDICATED, _("Power BI Embedded (A and EM SKUs)")),
            (FABRIC, _("Fabric (F SKUs)")),
        ],
        "settings_values": settings_form or CapacitySettingsForm.of(capacity),
        "settings_errors": {f: _(m) for f, m in (settings_errors or {}).items()},
        "sku_values": sku_form or SkuForm(),
        "sku_error": _(sku_error) if sku_error else "",
        "sku_change_options": [
            (sku.name, sku.name)
            for sku in sku_choices(capacity)
            if sku.name != capacity.sku.strip().upper()
        ],
        "provider": provider,
        "list_price": list_price,
        "price_override": price_override(capacity),
        "cost": cost,
        "chart": _chart_data(cost),
        "workspaces": workspaces,
        "zone": zone,
    }


async def _page(
    request: Request,
    db: Session,
    capacity: Capacity,
    live: LiveState,
    *,
    status_code: int = 200,
    **forms: Any,
) -> Response:
    context = await run_in_threadpool(lambda: _page_context(db, capacity, live, **forms))
    return render(request, "admin/capacity.html", context, status_code=status_code)


def _refused(
    request: Request, db: Session, capacity: Capacity, control: CapacityControl, **forms: Any
) -> Response:
    """The capacity's page again, status 400, with the refused form as typed and why."""
    live = _cached_state(control, capacity)
    context = _page_context(db, capacity, live, **forms)
    return render(request, "admin/capacity.html", context, status_code=400)


@router.get("/{capacity_id}")
async def capacity_page(
    request: Request, db: DbSession, capacity: AdminCapacity, control: CapacityControlDep
) -> Response:
    return await _page(request, db, capacity, await _live_state(control, capacity))


@router.get("/{capacity_id}/state")
async def capacity_state(
    request: Request, db: DbSession, capacity: AdminCapacity, control: CapacityControlDep
) -> Response:
    """The live state alone: the page polls it every few seconds."""
    live = await _live_state(control, capacity)
    context = await run_in_threadpool(_state_context, db, capacity, live)
    return render(request, "admin/_capacity_state.html", context)


@router.post("/{capacity_id}/azure", dependencies=[CsrfProtected])
def configure_capacity_azure(
    request: Request,
    db: DbSession,
    admin: AdminUser,
    capacity: AdminCapacity,
    control: CapacityControlDep,
    form: Annotated[CapacityAzureForm, Form()],
) -> Response:
    try:
        configure_capacity(session=db, capacity_id=capacity.id, **form.model_dump(), actor=admin)
    except CapacityInputError as error:
        return _refused(request, db, capacity, control, azure_form=form, azure_errors=error.errors)
    except UnknownCapacityError:  # pragma: no cover - admin_capacity found it just now
        raise HTTPException(status_code=404, detail=_("There is no such capacity.")) from None
    db.commit()
    # Where it lives has changed: what was read of it before says nothing now.
    control.forget(capacity.id)
    return flash_redirect(
        request, f"/admin/capacities/{capacity.id}", _("The Azure coordinates are saved.")
    )


@router.post("/{capacity_id}/settings", dependencies=[CsrfProtected])
def save_capacity_settings(
    request: Request,
    db: DbSession,
    admin: AdminUser,
    capacity: AdminCapacity,
    control: CapacityControlDep,
    form: Annotated[CapacitySettingsForm, Form()],
) -> Response:
    try:
        changed = update_capacity_settings(
            session=db, capacity=capacity, **form.model_dump(), actor=admin
        )
    except CapacityInputError as error:
        return _refused(
            request, db, capacity, control, settings_form=form, settings_errors=error.errors
        )
    db.commit()
    message = _("Changes saved.") if changed else _("Nothing was changed.")
    return flash_redirect(request, f"/admin/capacities/{capacity.id}", message)


@router.post("/{capacity_id}/schedule", dependencies=[CsrfProtected])
def save_capacity_schedule(
    request: Request,
    db: DbSession,
    admin: AdminUser,
    capacity: AdminCapacity,
    control: CapacityControlDep,
    form: Annotated[ScheduleForm, Form()],
) -> Response:
    return _store_schedule(request, db, admin, capacity, control, form, copying=False)


@router.post("/{capacity_id}/schedule/copy", dependencies=[CsrfProtected])
def copy_capacity_schedule_day(
    request: Request,
    db: DbSession,
    admin: AdminUser,
    capacity: AdminCapacity,
    control: CapacityControlDep,
    form: Annotated[ScheduleForm, Form()],
) -> Response:
    return _store_schedule(request, db, admin, capacity, control, form, copying=True)


def _store_schedule(
    request: Request,
    db: Session,
    admin: User,
    capacity: Capacity,
    control: CapacityControl,
    form: ScheduleForm,
    *,
    copying: bool,
) -> Response:
    """Save the schedule as posted ("copy this day to …" first, when asked); a refusal shows
    the editor again with the rows as typed and the errors by their fields."""
    try:
        if copying:
            copy_schedule_day(
                session=db,
                capacity=capacity,
                rows=form.rows(),
                copy_from=form.copy_from,
                copy_to=form.copy_to,
                actor=admin,
            )
        else:
            save_schedule(session=db, capacity=capacity, rows=form.rows(), actor=admin)
    except ScheduleInputError as error:
        return _refused(
            request, db, capacity, control, schedule_form=form, schedule_field_errors=error.errors
        )
    db.commit()
    message = (
        _("The rows are copied and the weekly schedule is saved.")
        if copying
        else _("The weekly schedule is saved.")
    )
    return flash_redirect(request, f"/admin/capacities/{capacity.id}#schedule", message)


@router.post("/{capacity_id}/schedule/edit", dependencies=[CsrfProtected])
def edit_capacity_schedule(
    request: Request,
    db: DbSession,
    _admin: AdminUser,
    capacity: AdminCapacity,
    control: CapacityControlDep,
    htmx: IsHtmx,
    form: Annotated[ScheduleForm, Form()],
) -> Response:
    """ "Add a row" and "Remove": the editor with the rows as typed, one more or one less.
    Nothing is saved; htmx gets the editor alone, a browser without JavaScript the page."""
    edited = form.edited()
    if htmx:
        zone = organization_zone(session=db)
        context = {"capacity": capacity, **_schedule_context(db, capacity, zone, edited, ())}
        return render(request, "admin/_capacity_schedule.html", context)
    live = _cached_state(control, capacity)
    return render(
        request, "admin/capacity.html", _page_context(db, capacity, live, schedule_form=edited)
    )


# --- turning it on and off, and its SKU, by hand -------------------------------------------------

_OPERATIONS = {
    "turn-on": Action.RESUME,
    "turn-off": Action.SUSPEND,
}


def _confirm(
    request: Request,
    capacity: Capacity,
    operation: str,
    *,
    sku: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "admin/capacity_confirm.html",
        {
            "capacity": capacity,
            "operation": operation,
            "sku": sku,
            "error": error,
            "old_price": (
                sku_info(name=capacity.sku).estimated_hourly_usd
                if is_known_sku(name=capacity.sku)
                else None
            ),
            "new_price": sku_info(name=sku).estimated_hourly_usd if sku else None,
        },
        status_code=status_code,
    )


async def _operate(
    request: Request,
    db: Session,
    admin: User,
    capacity: Capacity,
    control: CapacityControl,
    operation: str,
    *,
    sku: str | None = None,
) -> Response:
    action = Action.CHANGE_SKU if sku else _OPERATIONS[operation]
    # The operation finishes in the background, after this request's session is gone: it gets
    # the administrator detached, with what it reads of them (id, e-mail) already loaded.
    db.expunge(admin)
    try:
        await control.operate(
            capacity_id=capacity.id, action=action, reason=Reason.MANUAL, sku=sku, user=admin
        )
    except CapacityBusyError:
        message = _(
            "Another operation on this capacity is still running. Wait until it has finished "
            "(the state on the capacity's page says when), then try again."
        )
        return _confirm(request, capacity, operation, sku=sku, error=message, status_code=409)
    except CapacityNotConfiguredError:
        message = (
            _("Enter the capacity's Azure coordinates first.")
            if not capacity.is_configured
            else _("The Power BI connection is incomplete: set it in Admin → Settings.")
        )
        return _confirm(request, capacity, operation, sku=sku, error=message, status_code=400)
    name = capacity.display_name or capacity.id
    messages = {
        Action.RESUME: _(
            "Starting %(name)s. It takes a minute or two; the state below follows it.", name=name
        ),
        Action.SUSPEND: _(
            "Pausing %(name)s. The state below follows it; reports on it stop showing data.",
            name=name,
        ),
        Action.CHANGE_SKU: _(
            "Changing %(name)s to %(sku)s. The state below follows it.", name=name, sku=sku or ""
        ),
    }
    return flash_redirect(request, f"/admin/capacities/{capacity.id}", messages[action])


def _add_operation_routes(operation: str) -> None:
    """Turn on and turn off are the same two steps: a confirmation page, then the operation."""

    def confirm(request: Request, capacity: AdminCapacity) -> Response:
        return _confirm(request, capacity, operation)

    async def operate(
        request: Request,
        db: DbSession,
        admin: AdminUser,
        capacity: AdminCapacity,
        control: CapacityControlDep,
    ) -> Response:
        return await _operate(request, db, admin, capacity, control, operation)

    name = operation.replace("-", "_")
    router.add_api_route(
        f"/{{capacity_id}}/{operation}", confirm, methods=["GET"], name=f"confirm_{name}"
    )
    router.add_api_route(
        f"/{{capacity_id}}/{operation}",
        operate,
        methods=["POST"],
        name=name,
        dependencies=[CsrfProtected],
    )


for _operation in _OPERATIONS:
    _add_operation_routes(_operation)


@router.get("/{capacity_id}/sku")
def confirm_sku_change(
    request: Request,
    db: DbSession,
    capacity: AdminCapacity,
    control: CapacityControlDep,
    form: Annotated[SkuForm, Query()],
) -> Response:
    sku, error = parse_sku_choice(capacity=capacity, text=form.sku)
    if sku is None:
        return _refused(request, db, capacity, control, sku_form=form, sku_error=error)
    return _confirm(request, capacity, "sku", sku=sku)


@router.post("/{capacity_id}/sku", dependencies=[CsrfProtected])
async def change_sku(
    request: Request,
    db: DbSession,
    admin: AdminUser,
    capacity: AdminCapacity,
    control: CapacityControlDep,
    form: Annotated[SkuForm, Form()],
) -> Response:
    sku, error = parse_sku_choice(capacity=capacity, text=form.sku)
    if sku is None:
        return await run_in_threadpool(
            _refused, request, db, capacity, control, sku_form=form, sku_error=error
        )
    return await _operate(request, db, admin, capacity, control, "sku", sku=sku)
