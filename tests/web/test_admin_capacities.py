"""Admin → Capacities through the pages: the list and the reload from Power BI, a capacity's
Azure coordinates, its settings, the weekly schedule, the capacity audit and its CSV, the cost
figures, and the organization's global block. Power BI is the emulator, over real HTTP."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.access.organization import get_organization
from embedportal.db.models import (
    AuditEntry,
    Capacity,
    CapacityEvent,
    CapacityScheduleEntry,
    Organization,
)
from embedportal.db.session import session_scope
from tests.emulator.harness import Emulator
from tests.support.html import (
    Element,
    accessibility_problems,
    buttons,
    controls,
    elements,
    form_fields,
    links,
    parse,
    table_rows,
)
from tests.support.portal import LoginAs, MakeUser, csrf_of

DEDICATED_ID = "b339bc78-b288-5b65-a797-77c024ae3696"  # the emulator's embedportaldemo, A1
FABRIC_ID = "9cc5d9d6-0cda-56e9-8f9a-cdae2d92659a"  # the emulator's embedportalfabric, F2
DEMO_NAME = "embedportaldemo"


@pytest.fixture
def settings_overrides(emulator_settings_overrides: dict[str, object]) -> dict[str, object]:
    return {
        **emulator_settings_overrides,
        # Every workspace the service principal sees, so both demo capacities have reports.
        "powerbi_workspace_id": None,
        # The tests press the buttons themselves; a controller acting on the shared emulator
        # behind their back would make them flaky.
        "capacity_controller": False,
    }


@pytest.fixture
def admin(make_user: MakeUser, login_as: LoginAs) -> TestClient:
    return login_as(make_user("admin@example.com", role="admin"))


def organization(app: FastAPI) -> Organization:
    with session_scope(app.state.session_factory) as db:
        found = db.get(Organization, 1)
        assert found is not None
        db.expunge(found)
        return found


# --- the global block (Admin → Settings) --------------------------------------------------------

SETTINGS = {
    "name": "Acme",
    "time_zone": "Europe/Lisbon",
    "token_lifetime_minutes": "60",
    "refresh_margin_minutes": "10",
}


def test_the_global_block_is_saved_shown_and_audited(app: FastAPI, admin: TestClient) -> None:
    page = admin.get("/admin/settings")
    box = form_fields(page.text, action="/admin/settings")["nobody_may_start_capacity"]
    assert box.label == "Nobody may turn on a capacity" and not box.checked
    assert accessibility_problems(page.text) == []

    token = csrf_of(admin, "/admin/settings")
    data = {**SETTINGS, "nobody_may_start_capacity": "on", "csrf_token": token}
    assert admin.post("/admin/settings", data=data, follow_redirects=False).status_code == 303
    assert organization(app).nobody_may_start_capacity
    shown = admin.get("/admin/settings").text
    assert form_fields(shown, action="/admin/settings")["nobody_may_start_capacity"].checked

    # An unticked box sends nothing: the block is lifted.
    del data["nobody_may_start_capacity"]
    assert admin.post("/admin/settings", data=data, follow_redirects=False).status_code == 303
    assert not organization(app).nobody_may_start_capacity
    with session_scope(app.state.session_factory) as db:
        details = [
            entry.detail
            for entry in db.scalars(
                select(AuditEntry).where(AuditEntry.action == "organization.changed")
            )
        ]
    blocks = [
        detail["nobody_may_start_capacity"]
        for detail in details
        if "nobody_may_start_capacity" in detail
    ]
    assert blocks == [{"old": False, "new": True}, {"old": True, "new": False}]


def test_a_refused_settings_form_keeps_the_blocks_tick(admin: TestClient) -> None:
    token = csrf_of(admin, "/admin/settings")
    data = {**SETTINGS, "time_zone": "Mars/Base", "nobody_may_start_capacity": "on"}
    refused = admin.post("/admin/settings", data={**data, "csrf_token": token})
    assert refused.status_code == 400
    assert form_fields(refused.text, action="/admin/settings")["nobody_may_start_capacity"].checked


# --- the list and the reload --------------------------------------------------------------------


def reload(client: TestClient) -> str:
    """Sync the reports, then press "Reload from Power BI"; the flash message it shows."""
    token = csrf_of(client, "/admin/capacities")
    synced = client.post("/admin/reports/sync", data={"csrf_token": token}, follow_redirects=False)
    assert synced.status_code == 303
    response = client.post("/admin/capacities/reload", data={"csrf_token": token})
    assert response.status_code == 200
    flash = elements(response.text, "div")
    return next(div.text for div in flash if "flash" in div.classes)


def capacity_row(page: str, name: str) -> list[str]:
    return next(row for row in table_rows(page) if row and row[0].startswith(name))


def test_the_list_after_a_reload_shows_both_capacities_and_their_reports(
    admin: TestClient,
) -> None:
    empty = admin.get("/admin/capacities")
    assert "No capacities yet" in empty.text
    assert accessibility_problems(empty.text) == []
    message = reload(admin)
    assert message.startswith("Reloaded from Power BI: 2 capacities (2 new, 0 changed)")

    page = admin.get("/admin/capacities")
    assert accessibility_problems(page.text) == []
    demo = capacity_row(page.text, "embedportaldemo")
    fabric = capacity_row(page.text, "embedportalfabric")
    # The one EMBEDPORTAL_CAPACITY_* describes is configured; its state is ARM's.
    assert demo[1] == "A1" and demo[3] == "Running" and "Not configured" not in demo[0]
    assert "Sales Overview" in demo[4] and "Operations Dashboard" in demo[4]
    assert fabric[1] == "F2" and "Not configured" in fabric[0]
    assert "Finance Summary" in fabric[4] and "Sales Overview" not in fabric[4]
    assert ("embedportaldemo", f"/admin/capacities/{DEDICATED_ID}") in links(page.text)

    filtered = admin.get("/admin/capacities/rows", params={"q": "FABRIC"})
    assert elements(filtered.text, "html") == []
    assert "embedportalfabric" in filtered.text and "embedportaldemo" not in filtered.text
    nothing = admin.get("/admin/capacities", params={"q": "nothing-like-it"})
    assert "No capacity matches “nothing-like-it”." in nothing.text


def test_a_reload_power_bi_refuses_says_why(app: FastAPI, admin: TestClient) -> None:
    with session_scope(app.state.session_factory) as db:
        # A service principal Entra does not know.
        get_organization(session=db).powerbi_client_id = "00000000-0000-0000-0000-00000000dead"
    token = csrf_of(admin, "/admin/capacities")
    response = admin.post("/admin/capacities/reload", data={"csrf_token": token})
    assert response.status_code == 200
    assert "Power BI did not give the capacities:" in response.text
    assert "Check the connection in Admin → Settings" in response.text
    assert "No capacities yet" in response.text


# --- a capacity's page: Azure coordinates and settings ------------------------------------------


@pytest.fixture
def reloaded(admin: TestClient) -> TestClient:
    """Both demo capacities known, with their reports; embedportaldemo configured."""
    reload(admin)
    return admin


def capacity(app: FastAPI, capacity_id: str) -> Capacity:
    with session_scope(app.state.session_factory) as db:
        found = db.get(Capacity, capacity_id)
        assert found is not None
        db.expunge(found)
        return found


def post(client: TestClient, path: str, **fields: str | list[str]) -> httpx.Response:
    data: dict[str, str | list[str]] = {
        **fields,
        "csrf_token": csrf_of(client, "/admin/capacities"),
    }
    return client.post(path, data=data, follow_redirects=False)


def test_the_capacity_page_shows_what_there_is_to_know(reloaded: TestClient) -> None:
    page = reloaded.get(f"/admin/capacities/{DEDICATED_ID}")
    assert page.status_code == 200
    assert accessibility_problems(page.text) == []
    azure = form_fields(page.text, action=f"/admin/capacities/{DEDICATED_ID}/azure")
    assert azure["resource_name"].value == "embedportaldemo"
    assert azure["provider"].value == "Microsoft.PowerBIDedicated"
    assert "Running" in page.text and "Turn off" in links_text(page.text)
    # The reports on it, and the SKUs it can change to (its own family, not its own SKU).
    assert "Sales Overview" in [text for text, _href in links(page.text)]
    sku = form_fields(page.text, action=f"/admin/capacities/{DEDICATED_ID}/sku")["sku"]
    assert [value for value, _text in sku.options] == ["", "A2", "A3", "A4", "A5", "A6"]
    fabric = reloaded.get(f"/admin/capacities/{FABRIC_ID}")
    assert "Not configured" in fabric.text and "Turn on" not in links_text(fabric.text)
    assert reloaded.get("/admin/capacities/not-a-capacity").status_code == 404


def links_text(page: str) -> list[str]:
    return [text for text, _href in links(page)]


def test_bad_coordinates_are_refused_by_the_field_and_nothing_is_saved(
    app: FastAPI, reloaded: TestClient
) -> None:
    path = f"/admin/capacities/{FABRIC_ID}/azure"
    response = post(
        reloaded,
        path,
        subscription_id="not-a-guid",
        resource_group="bad group!",
        resource_name="Has-Capitals",
        provider="Microsoft.PowerBIDedicated",  # an F2 is a Fabric capacity
    )
    assert response.status_code == 400
    assert accessibility_problems(response.text) == []
    fields = form_fields(response.text, action=path)
    assert fields["subscription_id"].value == "not-a-guid"  # as typed
    assert "GUID" in fields["subscription_id"].error
    assert fields["resource_group"].error and fields["resource_name"].error
    assert fields["provider"].error == "A capacity with an F SKU is a Fabric capacity."
    assert not capacity(app, FABRIC_ID).is_configured

    good = post(
        reloaded,
        path,
        subscription_id="00000000-0000-0000-0000-0000000e0003",
        resource_group="embedportal-demo",
        resource_name="embedportalfabric",
        provider="Microsoft.Fabric",
    )
    assert good.status_code == 303 and good.headers["location"] == f"/admin/capacities/{FABRIC_ID}"
    assert capacity(app, FABRIC_ID).resource_name == "embedportalfabric"
    page = reloaded.get(good.headers["location"])
    assert "The Azure coordinates are saved." in page.text
    assert "Active" in page.text and "Not configured" not in page.text  # ARM's word for it


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ({"idle_pause_minutes": "0"}, "idle_pause_minutes"),
        ({"idle_pause_minutes": "1441"}, "idle_pause_minutes"),
        ({"idle_pause_minutes": "abc"}, "idle_pause_minutes"),
        ({"hourly_price": "cheap"}, "hourly_price"),
        ({"hourly_price": "-1"}, "hourly_price"),
        ({"starting_message": "x" * 501}, "starting_message"),
    ],
)
def test_settings_out_of_bounds_are_refused_by_the_field(
    app: FastAPI, reloaded: TestClient, fields: dict[str, str], refused: str
) -> None:
    path = f"/admin/capacities/{DEDICATED_ID}/settings"
    typed = {"idle_pause_minutes": "30", "starting_message": "Hello", "hourly_price": "", **fields}
    response = post(reloaded, path, **typed)
    assert response.status_code == 400
    assert accessibility_problems(response.text) == []
    shown = form_fields(response.text, action=path)
    assert shown[refused].invalid and shown[refused].error
    assert shown[refused].value == typed[refused]
    assert {name for name, field in shown.items() if field.error} == {refused}
    saved = capacity(app, DEDICATED_ID)
    assert (saved.idle_pause_minutes, saved.starting_message, saved.hourly_price) == (
        None,
        "",
        None,
    )


def test_settings_are_saved_shown_again_and_audited(app: FastAPI, reloaded: TestClient) -> None:
    path = f"/admin/capacities/{DEDICATED_ID}/settings"
    page = reloaded.get(f"/admin/capacities/{DEDICATED_ID}")
    assert "Empty: the estimate, $1.0081 for A1" in page.text
    response = post(
        reloaded,
        path,
        idle_pause_minutes=" 45 ",
        starting_message="  Um momento: a capacidade está ligando.  ",
        hourly_price="1,25",  # a decimal comma
    )
    assert response.status_code == 303
    saved = capacity(app, DEDICATED_ID)
    assert saved.idle_pause_minutes == 45 and saved.hourly_price == 1.25
    assert saved.starting_message == "Um momento: a capacidade está ligando."
    shown = reloaded.get(response.headers["location"])
    fields = form_fields(shown.text, action=path)
    assert (fields["idle_pause_minutes"].value, fields["hourly_price"].value) == ("45", "1.25")
    assert "Your own price: $1.2500 per running hour" in shown.text
    # Empty turns the idle pause off and the price back to the estimate.
    post(reloaded, path, idle_pause_minutes="", starting_message="", hourly_price="")
    cleared = capacity(app, DEDICATED_ID)
    assert (cleared.idle_pause_minutes, cleared.hourly_price) == (None, None)
    with session_scope(app.state.session_factory) as db:
        changes = [
            entry.detail
            for entry in db.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "capacity.settings_changed")
                .order_by(AuditEntry.id)
            )
        ]
    assert changes[0]["idle_pause_minutes"] == {"old": None, "new": 45}
    assert changes[0]["hourly_price"] == {"old": None, "new": "1.25"}
    assert changes[1]["hourly_price"] == {"old": "1.25", "new": None}


# --- the weekly schedule -------------------------------------------------------------------------

SCHEDULE = f"/admin/capacities/{DEDICATED_ID}/schedule"


def schedule_rows(
    app: FastAPI, capacity_id: str = DEDICATED_ID
) -> list[tuple[int, int, str, str | None]]:
    with session_scope(app.state.session_factory) as db:
        return [
            (entry.weekday, entry.at_minute, entry.action, entry.sku)
            for entry in db.scalars(
                select(CapacityScheduleEntry)
                .where(CapacityScheduleEntry.capacity_id == capacity_id)
                .order_by(CapacityScheduleEntry.weekday, CapacityScheduleEntry.at_minute)
            )
        ]


def rows(*typed: tuple[str, str, str, str]) -> dict[str, list[str]]:
    """The schedule form's four lists from (weekday, time, action, sku) rows."""
    return {
        "weekday": [row[0] for row in typed],
        "time": [row[1] for row in typed],
        "action": [row[2] for row in typed],
        "sku": [row[3] for row in typed],
    }


WORKING_WEEK = rows(
    ("0", "08:00", "turn_on", ""),
    ("0", "18:30", "turn_off", "A2"),  # a SKU left selected on an on/off row is ignored
    ("4", "12:00", "change_sku", "a2"),
    ("", "", "", ""),  # the form's spare row
)


def row_errors(page: str, row: int) -> dict[str, str]:
    """The errors read out with each field of one schedule row."""
    return {
        control.name: control.error
        for control in controls(page, action=SCHEDULE)
        if control.attrs.get("id", "").endswith(f"-{row}") and control.error
    }


def test_a_good_schedule_is_saved_and_shown_again_in_the_organizations_zone(
    app: FastAPI, reloaded: TestClient
) -> None:
    with session_scope(app.state.session_factory) as db:
        get_organization(session=db).time_zone = "America/Sao_Paulo"
    response = post(reloaded, SCHEDULE, **WORKING_WEEK)
    assert response.status_code == 303
    assert schedule_rows(app) == [
        (0, 8 * 60, "turn_on", None),
        (0, 18 * 60 + 30, "turn_off", None),
        (4, 12 * 60, "change_sku", "A2"),
    ]
    page = reloaded.get(response.headers["location"])
    assert "The weekly schedule is saved." in page.text
    assert "Times are in America/Sao_Paulo, the organization's time zone" in page.text
    assert accessibility_problems(page.text) == []
    fields = form_fields(page.text, action=SCHEDULE)
    # The saved rows, then blank ones to add rows without JavaScript.
    assert fields["weekday"].values == ("0", "0", "4", "", "", "")
    assert fields["time"].values == ("08:00", "18:30", "12:00", "", "", "")
    assert fields["action"].values[:3] == ("turn_on", "turn_off", "change_sku")
    assert fields["sku"].values[:3] == ("", "", "A2")
    assert fields["time"].controls[0].label == "Time, row 1"
    with session_scope(app.state.session_factory) as db:
        entry = db.scalars(
            select(AuditEntry).where(AuditEntry.action == "capacity.schedule_changed")
        ).one()
        assert entry.detail["new"] == [
            "monday 08:00 turn_on",
            "monday 18:30 turn_off",
            "friday 12:00 change_sku A2",
        ]
    # Saved again unchanged: nothing new to audit.
    post(reloaded, SCHEDULE, **WORKING_WEEK)
    with session_scope(app.state.session_factory) as db:
        changed = db.scalars(
            select(AuditEntry).where(AuditEntry.action == "capacity.schedule_changed")
        ).all()
        assert len(changed) == 1


def test_refused_rows_are_marked_by_the_field_and_nothing_is_saved(
    app: FastAPI, reloaded: TestClient
) -> None:
    post(reloaded, SCHEDULE, **WORKING_WEEK)
    before = schedule_rows(app)
    typed = rows(
        ("0", "08:00", "turn_on", ""),
        ("0", "08:00", "turn_on", ""),  # repeats row 1
        ("0", "08:00", "turn_off", ""),  # another action at the same day and time
        ("1", "8h", "turn_on", ""),  # not HH:MM
        ("2", "24:00", "turn_on", ""),
        ("3", "09:00", "change_sku", "Z9"),  # no such SKU
        ("3", "10:00", "change_sku", "F2"),  # an A capacity cannot become an F one
        ("", "11:00", "turn_on", ""),  # no day
        ("5", "12:00", "explode", ""),
        ("6", "13:00", "change_sku", ""),
    )
    response = post(reloaded, SCHEDULE, **typed)
    assert response.status_code == 400
    assert accessibility_problems(response.text) == []
    assert "Nothing was saved: correct the rows marked below." in response.text
    assert row_errors(response.text, 0) == {}
    assert row_errors(response.text, 1) == {"time": "This row repeats row 1."}
    assert "Row 1 already does something else" in row_errors(response.text, 2)["time"]
    assert "HH:MM" in row_errors(response.text, 3)["time"]
    assert "HH:MM" in row_errors(response.text, 4)["time"]
    assert row_errors(response.text, 5)["sku"].startswith("Unknown SKU.")
    assert "choose an A or EM SKU" in row_errors(response.text, 6)["sku"]
    assert row_errors(response.text, 7) == {"weekday": "Choose a day of the week."}
    assert set(row_errors(response.text, 8)) == {"action"}
    assert row_errors(response.text, 9) == {"sku": "Choose the SKU to change to."}
    # What was typed is shown again, as typed.
    assert form_fields(response.text, action=SCHEDULE)["time"].values[3] == "8h"
    assert schedule_rows(app) == before


def test_copy_a_day_to_other_days(app: FastAPI, reloaded: TestClient) -> None:
    typed = rows(
        ("0", "08:00", "turn_on", ""),
        ("0", "18:00", "turn_off", ""),
        ("1", "09:00", "turn_on", ""),  # Tuesday's own row: replaced by Monday's
        ("5", "10:00", "turn_on", ""),  # Saturday is not a target: kept
    )
    response = post(reloaded, f"{SCHEDULE}/copy", **typed, copy_from="0", copy_to=["1", "2", "0"])
    assert response.status_code == 303
    on, off = 8 * 60, 18 * 60
    assert schedule_rows(app) == [
        (0, on, "turn_on", None),
        (0, off, "turn_off", None),
        (1, on, "turn_on", None),
        (1, off, "turn_off", None),
        (2, on, "turn_on", None),
        (2, off, "turn_off", None),
        (5, 10 * 60, "turn_on", None),
    ]
    assert "The rows are copied" in reloaded.get(response.headers["location"]).text

    nothing_chosen = post(reloaded, f"{SCHEDULE}/copy", **typed, copy_from="0")
    assert nothing_chosen.status_code == 400
    fields = form_fields(nothing_chosen.text, action=SCHEDULE)
    assert fields["copy_to"].error == "Choose at least one other day to copy the rows to."
    no_day = post(reloaded, f"{SCHEDULE}/copy", **typed, copy_from="", copy_to=["3"])
    assert form_fields(no_day.text, action=SCHEDULE)["copy_from"].error == "Choose the day to copy."
    assert form_fields(no_day.text, action=SCHEDULE)["copy_to"].values == ("3",)
    assert accessibility_problems(no_day.text) == []
    assert len(schedule_rows(app)) == 7


def test_rows_are_added_and_removed_without_saving(app: FastAPI, reloaded: TestClient) -> None:
    typed = rows(("0", "08:00", "turn_on", ""), ("1", "09:00", "turn_off", ""))
    added = post(reloaded, f"{SCHEDULE}/edit", **typed, add_row="1")
    assert added.status_code == 200
    assert form_fields(added.text, action=SCHEDULE)["weekday"].values == ("0", "1", "")
    # htmx gets the editor alone, with the first row removed.
    removed = reloaded.post(
        f"{SCHEDULE}/edit",
        data={**typed, "remove_row": "0", "csrf_token": csrf_of(reloaded, "/admin/capacities")},
        headers={"HX-Request": "true"},
    )
    assert removed.status_code == 200 and elements(removed.text, "html") == []
    assert form_fields(removed.text, action=SCHEDULE)["time"].values == ("09:00",)
    assert accessibility_problems(removed.text) == []
    assert schedule_rows(app) == []


# --- the capacity audit and its CSV -------------------------------------------------------------


def record(app: FastAPI, *events: CapacityEvent) -> None:
    with session_scope(app.state.session_factory) as db:
        db.add_all(events)


def event(at: datetime, action: str, reason: str, **fields: str) -> CapacityEvent:
    return CapacityEvent(
        at=at,
        capacity_id=fields.pop("capacity_id", DEDICATED_ID),
        action=action,
        reason=reason,
        **fields,
    )


INJECTION = '=HYPERLINK("http://evil.example")@example.com'


@pytest.fixture
def audited(app: FastAPI, reloaded: TestClient) -> TestClient:
    """A week of capacity events, in Lisbon's time zone (UTC+1 in June)."""
    with session_scope(app.state.session_factory) as db:
        get_organization(session=db).time_zone = "Europe/Lisbon"
    june = datetime(2026, 6, 1, 8, tzinfo=UTC)
    record(
        app,
        event(june, "started", "manual", user_email="ana@example.com"),
        event(june + timedelta(hours=2), "paused", "inactivity"),
        event(june + timedelta(days=1), "started", "on_demand", user_email="bruno@example.com"),
        event(
            june + timedelta(days=1, hours=1),
            "sku_changed",
            "manual",
            sku_before="A1",
            sku_after="A2",
            user_email="ana@example.com",
        ),
        event(june + timedelta(days=1, hours=10), "paused", "inactivity_after_schedule"),
        event(june + timedelta(days=2), "started", "schedule"),
        event(
            june + timedelta(days=2, hours=1),
            "pause_failed",
            "schedule",
            error="The client has no authorization.",
        ),
        event(june + timedelta(days=2, hours=2), "paused", "schedule"),
        event(
            june + timedelta(days=3),
            "start_failed",
            "manual",
            user_email=INJECTION,
            error="-1 denied",
        ),
        event(june + timedelta(days=4), "started", "outside_portal", capacity_id=FABRIC_ID),
        # 23:30 UTC on 5 June is 00:30 on 6 June in Lisbon.
        event(
            datetime(2026, 6, 5, 23, 30, tzinfo=UTC),
            "paused",
            "manual",
            capacity_id=FABRIC_ID,
            user_email="ana@example.com",
        ),
    )
    return reloaded


def audit_lines(page: str) -> list[list[str]]:
    return table_rows(page)[1:]  # the header row aside


def test_the_audit_says_what_happened_in_peoples_words(audited: TestClient) -> None:
    page = audited.get("/admin/capacities/audit")
    assert page.status_code == 200
    assert accessibility_problems(page.text) == []
    assert "11 entries, newest first." in page.text and "When (Europe/Lisbon)" in page.text
    lines = audit_lines(page.text)
    assert lines[0][0] == "Jun 6, 2026, 12:30:00 AM"  # as an English reader writes it
    assert lines[0][1:3] == ["embedportalfabric", "Paused manually by ana@example.com"]
    described = [line[2] for line in lines]
    assert described == [
        "Paused manually by ana@example.com",
        "Changed outside the portal: started",
        "Start failed: -1 denied",
        "Paused by schedule",
        "Pause failed: The client has no authorization.",
        "Started by schedule",
        "Paused due to inactivity after the scheduled time",
        "SKU changed A1 → A2",
        "Started on demand by bruno@example.com",
        "Paused due to inactivity",
        "Started manually by ana@example.com",
    ]
    assert [line[3] for line in lines[:2]] == ["By hand", "Outside the portal"]


@pytest.mark.parametrize(
    ("filters", "count"),
    [
        ({"capacity": FABRIC_ID}, 2),
        ({"user": "ANA@"}, 3),
        ({"action": "paused"}, 4),
        ({"reason": "schedule"}, 3),
        ({"action": "started", "reason": "manual"}, 1),
        # Whole days in Lisbon: the 23:30 UTC pause on 5 June belongs to the 6th.
        ({"since": "2026-06-06", "until": "2026-06-06"}, 1),
        ({"since": "2026-06-02", "until": "2026-06-03"}, 6),
        ({"capacity": DEDICATED_ID, "since": "2026-06-05"}, 0),
    ],
)
def test_the_audit_filters(audited: TestClient, filters: dict[str, str], count: int) -> None:
    rows_only = audited.get("/admin/capacities/audit/rows", params=filters)
    assert rows_only.status_code == 200 and elements(rows_only.text, "html") == []
    assert len(audit_lines(rows_only.text)) == count
    page = audited.get("/admin/capacities/audit", params=filters)
    shown = form_fields(page.text, action="/admin/capacities/audit")
    for name, value in filters.items():
        assert shown[name].value == value
    if count == 0:
        assert "Nothing recorded matches these filters." in page.text


@pytest.mark.parametrize(
    ("filters", "refused"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-02-30"}, "until"),
        ({"since": "2026-06-03", "until": "2026-06-01"}, "until"),
        ({"action": "exploded"}, "action"),
        ({"reason": "whim"}, "reason"),
    ],
)
def test_bad_audit_filters_are_named(
    audited: TestClient, filters: dict[str, str], refused: str
) -> None:
    for path in (
        "/admin/capacities/audit",
        "/admin/capacities/audit/rows",
        "/admin/capacities/audit.csv",
    ):
        response = audited.get(path, params=filters)
        assert response.status_code == 400, path
        assert "form-error" in response.text
    page = audited.get("/admin/capacities/audit", params=filters)
    assert accessibility_problems(page.text) == []
    field = form_fields(page.text, action="/admin/capacities/audit")[refused]
    assert field.invalid and field.error
    if field.type == "date":  # a select cannot show a value it does not offer
        assert field.value == filters[refused]


def test_the_audit_has_pages(app: FastAPI, reloaded: TestClient) -> None:
    start = datetime(2026, 6, 1, tzinfo=UTC)
    record(app, *(event(start + timedelta(minutes=n), "started", "schedule") for n in range(60)))
    first = reloaded.get("/admin/capacities/audit", params={"reason": "schedule"})
    assert len(audit_lines(first.text)) == 50 and "Page 1 of 2" in first.text
    older = next(href for text, href in links(first.text) if text == "Older")
    assert older == "/admin/capacities/audit?reason=schedule&page=2"
    assert len(audit_lines(reloaded.get(older).text)) == 10


def test_the_csv_export_has_every_matching_entry_and_no_formulas(audited: TestClient) -> None:
    page = audited.get("/admin/capacities/audit", params={"capacity": DEDICATED_ID})
    export = next(href for text, href in links(page.text) if text == "Export as CSV")
    assert export == f"/admin/capacities/audit.csv?capacity={DEDICATED_ID}"
    response = audited.get(export)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["content-disposition"]
    text = response.content.decode("utf-8-sig")
    table = list(csv.reader(io.StringIO(text)))
    assert table[0][:6] == ["time", "time_zone", "capacity_id", "capacity", "action", "reason"]
    assert len(table) == 1 + 9  # the header, then the dedicated capacity's entries
    failed = next(line for line in table if line[4] == "start_failed")
    header = table[0]
    cell = dict(zip(header, failed, strict=True))
    # Cells a spreadsheet would run as a formula are made text.
    assert cell["user_email"] == "'" + INJECTION
    assert cell["error"] == "'-1 denied"
    assert cell["description"] == "Start failed: -1 denied"
    assert cell["time"] == "2026-06-04T09:00:00+01:00" and cell["time_zone"] == "Europe/Lisbon"
    assert not any(value.startswith(("=", "+", "-", "@")) for line in table for value in line)


# --- hours and estimated cost -------------------------------------------------------------------


def cost_rows(page: str) -> dict[str, list[str]]:
    table = next(t for t in elements(page, "table") if t.attrs.get("id") == "capacity-cost-table")
    return {row[0]: row[1:] for row in table_rows_of(table)}


def table_rows_of(table: Element) -> list[list[str]]:
    return [
        [cell.text for cell in row.iter() if cell.tag in {"th", "td"}]
        for row in elements(table, "tr")
    ]


def test_the_page_shows_hours_and_estimated_cost_per_day(
    app: FastAPI, reloaded: TestClient
) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).replace(
        hour=8, minute=0, second=0, microsecond=0
    )
    record(
        app,
        event(yesterday, "started", "manual", user_email="ana@example.com"),
        event(yesterday + timedelta(hours=2), "paused", "inactivity"),
        # A start that Azure refused started nothing.
        event(yesterday + timedelta(hours=3), "started", "manual"),
        event(yesterday + timedelta(hours=3, seconds=5), "start_failed", "manual", error="no"),
    )
    page = reloaded.get(f"/admin/capacities/{DEDICATED_ID}")
    day = yesterday.date().isoformat()
    figures = cost_rows(page.text)
    assert figures[day] == ["2.00", "2.02"]  # 2 hours of A1 at $1.0081
    assert figures["Total"] == ["2.00", "2.02"]
    assert len(figures) == 30 + 2  # the header, 30 days, the total
    assert "A1: $1.0081 per running hour (estimate" in page.text
    assert "Whole month, always on" in page.text
    chart = json.loads(
        next(
            e for e in elements(page.text, "script") if e.attrs.get("id") == "capacity-chart-data"
        ).raw_text
    )
    assert len(chart["labels"]) == 30 and chart["labels"][-2] == day
    assert chart["hours"][-2] == 2.0 and chart["cost"][-2] == 2.02
    # The page loads Chart.js from node_modules and its own script, and no inline script.
    sources = [e.attrs.get("src") for e in elements(page.text, "script")]
    assert (
        "/static/vendor/chart.umd.js" in sources and "/static/app/js/capacity-chart.js" in sources
    )
    inline = [e for e in elements(page.text, "script") if not e.attrs.get("src")]
    assert [e.attrs.get("type") for e in inline] == ["application/json"]
    for asset in ("/static/vendor/chart.umd.js", "/static/app/js/capacity-chart.js"):
        assert reloaded.get(asset).status_code == 200

    # With the administrator's own price, every figure follows it.
    post(reloaded, f"/admin/capacities/{DEDICATED_ID}/settings", hourly_price="1.5")
    repriced = cost_rows(reloaded.get(f"/admin/capacities/{DEDICATED_ID}").text)
    assert repriced[day] == ["2.00", "3.00"]


# --- turning it on and off against the emulator -------------------------------------------------

METER = f"/emulator/api/capacities/{DEMO_NAME}/meter"
FAULTS = f"/emulator/api/capacities/{DEMO_NAME}/faults"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout}s for {what}")
        time.sleep(0.05)


def meter(emulator: Emulator) -> dict[str, Any]:
    answer = emulator.http.get(METER).json()
    assert isinstance(answer, dict)
    return answer


@pytest.fixture
def demo_capacity(emulator: Emulator) -> Iterator[Emulator]:
    """The emulator's embedportaldemo, left as every other test expects it: running, A1, with
    its default Azure role."""
    yield emulator
    emulator.http.delete(FAULTS)
    arm = f"{emulator.capacity_path}?api-version=2021-01-01"
    wait_for(lambda: meter(emulator)["state"] in ("Succeeded", "Paused"), "a settled capacity")
    if meter(emulator)["sku"] != "A1":
        body = {"sku": {"name": "A1", "tier": "PBIE_Azure"}}
        emulator.http.patch(arm, json=body, headers=emulator.arm_headers())
        wait_for(lambda: meter(emulator)["sku"] == "A1", "A1 again")
    wait_for(lambda: meter(emulator)["state"] in ("Succeeded", "Paused"), "a settled capacity")
    if meter(emulator)["state"] != "Succeeded":
        resume = f"{emulator.capacity_path}/resume?api-version=2021-01-01"
        emulator.http.post(resume, headers=emulator.arm_headers())
        wait_for(lambda: meter(emulator)["state"] == "Succeeded", "the capacity running again")


def events_of(app: FastAPI, capacity_id: str = DEDICATED_ID) -> list[CapacityEvent]:
    with session_scope(app.state.session_factory) as db:
        found = list(
            db.scalars(
                select(CapacityEvent)
                .where(CapacityEvent.capacity_id == capacity_id)
                .order_by(CapacityEvent.id)
            )
        )
        db.expunge_all()
        return found


def settled(app: FastAPI) -> bool:
    """The portal has seen its operation on embedportaldemo finish."""
    return capacity(app, DEDICATED_ID).operation is None


def test_turn_off_then_on_really_pauses_and_resumes_the_capacity(
    app: FastAPI, reloaded: TestClient, demo_capacity: Emulator
) -> None:
    base = f"/admin/capacities/{DEDICATED_ID}"
    started_before = meter(demo_capacity)["startedCount"]
    confirm = reloaded.get(f"{base}/turn-off")
    assert confirm.status_code == 200 and accessibility_problems(confirm.text) == []
    assert "Turn off embedportaldemo?" in confirm.text
    assert "Turn off" in buttons(confirm.text)

    off = post(reloaded, f"{base}/turn-off")
    assert off.status_code == 303 and off.headers["location"] == base
    assert "Pausing embedportaldemo." in reloaded.get(base).text
    wait_for(lambda: meter(demo_capacity)["state"] == "Paused", "ARM to pause it")
    wait_for(lambda: settled(app), "the portal to see the pause through")
    (paused,) = events_of(app)
    assert (paused.action, paused.reason, paused.user_email) == (
        "paused",
        "manual",
        "admin@example.com",
    )
    state = reloaded.get(f"{base}/state")
    assert elements(state.text, "html") == []
    assert "Paused" in state.text and "Paused manually by admin@example.com" in state.text
    assert "Turn on" in links_text(reloaded.get(base).text)

    on = post(reloaded, f"{base}/turn-on")
    assert on.status_code == 303
    wait_for(lambda: meter(demo_capacity)["state"] == "Succeeded", "ARM to resume it")
    wait_for(lambda: settled(app), "the portal to see the start through")
    assert meter(demo_capacity)["startedCount"] == started_before + 1
    assert [(e.action, e.reason) for e in events_of(app)] == [
        ("paused", "manual"),
        ("started", "manual"),
    ]
    assert "Running" in reloaded.get(f"{base}/state").text


def test_a_sku_change_is_confirmed_then_made(
    app: FastAPI, reloaded: TestClient, demo_capacity: Emulator
) -> None:
    base = f"/admin/capacities/{DEDICATED_ID}"
    for refused, why in (
        ("F2", "This capacity cannot change to that SKU"),
        ("A1", "The capacity already has this SKU."),
        ("", "Choose the SKU to change to."),
    ):
        page = reloaded.get(f"{base}/sku", params={"sku": refused})
        assert page.status_code == 400
        assert why in form_fields(page.text, action=f"{base}/sku")["sku"].error
        assert accessibility_problems(page.text) == []
    confirm = reloaded.get(f"{base}/sku", params={"sku": "a2"})
    assert confirm.status_code == 200
    assert "Change embedportaldemo from A1 to A2?" in confirm.text
    assert "$1.0081 → $2.0162" in confirm.text
    assert form_fields(confirm.text, action=f"{base}/sku")["sku"].value == "A2"
    assert post(reloaded, f"{base}/sku", sku="F4").status_code == 400

    changed = post(reloaded, f"{base}/sku", sku="A2")
    assert changed.status_code == 303
    wait_for(lambda: meter(demo_capacity)["sku"] == "A2", "ARM to scale it")
    wait_for(lambda: settled(app), "the portal to see the change through")
    (resized,) = events_of(app)
    assert (resized.action, resized.sku_before, resized.sku_after) == ("sku_changed", "A1", "A2")
    assert capacity(app, DEDICATED_ID).sku == "A2"


def test_without_the_azure_role_the_failure_is_recorded_and_shown(
    app: FastAPI, reloaded: TestClient, demo_capacity: Emulator
) -> None:
    assert demo_capacity.http.put(FAULTS, json={"azureRole": "Reader"}).status_code == 200
    base = f"/admin/capacities/{DEDICATED_ID}"
    response = post(reloaded, f"{base}/turn-off")
    # ARM answers in the background: the request itself succeeds.
    assert response.status_code == 303
    wait_for(lambda: any(e.action == "pause_failed" for e in events_of(app)), "the failure")
    wait_for(lambda: settled(app), "the claim to be released")
    failed = events_of(app)[-1]
    assert failed.reason == "manual" and failed.user_email == "admin@example.com"
    assert "Contributor" in failed.error
    assert meter(demo_capacity)["state"] == "Succeeded"  # nothing happened in Azure
    page = reloaded.get(base)
    assert page.status_code == 200
    assert f"Pause failed: {failed.error}" in parse(page.text).text
    audit = reloaded.get("/admin/capacities/audit", params={"action": "pause_failed"})
    assert f"Pause failed: {failed.error}" in parse(audit.text).text


def test_while_an_operation_runs_another_is_refused_with_why(
    app: FastAPI, reloaded: TestClient, demo_capacity: Emulator
) -> None:
    with session_scope(app.state.session_factory) as db:
        found = db.get(Capacity, DEDICATED_ID)
        assert found is not None
        found.operation, found.operation_started_at = "suspend", datetime.now(UTC)
    started_before = meter(demo_capacity)["startedCount"]
    refused = post(reloaded, f"/admin/capacities/{DEDICATED_ID}/turn-on")
    assert refused.status_code == 409
    assert "Another operation on this capacity is still running." in refused.text
    assert accessibility_problems(refused.text) == []
    assert events_of(app) == [] and meter(demo_capacity)["startedCount"] == started_before


def test_a_capacity_without_coordinates_cannot_be_operated(
    app: FastAPI, reloaded: TestClient
) -> None:
    refused = post(reloaded, f"/admin/capacities/{FABRIC_ID}/turn-on")
    assert refused.status_code == 400
    assert "Enter the capacity's Azure coordinates first." in parse(refused.text).text
    assert events_of(app, FABRIC_ID) == []


def test_the_pages_speak_brazilian_portuguese(
    app: FastAPI, reloaded: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    record(app, event(datetime(2026, 6, 1, 8, tzinfo=UTC), "paused", "inactivity"))
    client = login_as(make_user("ana@example.com", role="admin", language="pt_BR"))
    page = client.get(f"/admin/capacities/{DEDICATED_ID}")
    assert page.status_code == 200
    text = parse(page.text).text
    for words in ("Agenda semanal", "Pausar a capacidade após", "Segunda-feira", "Desligar"):
        assert words in text
    assert "Pausada por inatividade" in parse(client.get("/admin/capacities/audit").text).text
    assert "Recarregar do Power BI" in client.get("/admin/capacities").text


JUNK = ["", " ", "0", "-1", "1e309", "x" * 5000, "<script>", "NaN", "99:99", "\u0000", "☃", "../"]


@pytest.mark.parametrize("junk", JUNK)
def test_junk_in_every_capacity_form_is_refused_not_a_server_error(
    reloaded: TestClient, junk: str
) -> None:
    """What an attacker or a broken browser may post: every answer is a page or a refusal."""
    base = f"/admin/capacities/{DEDICATED_ID}"
    posts = {
        f"{base}/azure": ["subscription_id", "resource_group", "resource_name", "provider"],
        f"{base}/settings": ["idle_pause_minutes", "starting_message", "hourly_price"],
        f"{base}/schedule": ["weekday", "time", "action", "sku"],
        f"{base}/schedule/copy": ["weekday", "time", "action", "sku", "copy_from", "copy_to"],
        f"{base}/schedule/edit": ["weekday", "time", "action", "sku", "remove_row", "add_row"],
        f"{base}/sku": ["sku"],
    }
    for path, names in posts.items():
        answer = post(reloaded, path, **dict.fromkeys(names, junk))
        assert answer.status_code < 500, (path, junk, answer.text[:300])
    gets: list[tuple[str, dict[str, str]]] = [
        (f"{base}/sku", {"sku": junk}),
        ("/admin/capacities", {"q": junk}),
        ("/admin/capacities/rows", {"q": junk}),
        (
            "/admin/capacities/audit",
            {"capacity": junk, "since": junk, "until": junk, "page": junk},
        ),
        ("/admin/capacities/audit.csv", {"user": junk, "action": junk, "reason": junk}),
        (f"/admin/capacities/{quote(junk, safe='') or 'none'}", {}),
    ]
    for path, params in gets:
        assert reloaded.get(path, params=params).status_code < 500, (path, junk)
