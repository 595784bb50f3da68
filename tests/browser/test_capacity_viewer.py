"""What viewers see while the capacity is paused, starting and back, in a real browser.

The real `python -m embedportal serve` (portal, capacity controller, built-in emulator with its
ARM capacity), Debian's Chromium and the genuine powerbi-client. The controller runs a pass
every half second; the emulator's capacity takes two seconds to pause or resume. Nobody
reloads a page: every test checks that the document it started with is still there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Dialog,
    FrameLocator,
    Locator,
    Page,
    expect,
)

from embedportal.emulator.demo import OPERATIONS_DASHBOARD_REPORT_ID, SALES_OVERVIEW_REPORT_ID
from tests.browser.capacity_support import (
    PAUSED,
    RUNNING,
    CapacityArm,
    PortalData,
    count_reloads,
    events_urls,
    keeper_states,
    marker,
    reloads,
    slot_states,
    watch_page,
)
from tests.browser.keeper_support import (
    ADMIN,
    DEMO_GROUP,
    REPORT,
    REPORT_LOAD_TIMEOUT,
    VIEWER,
    sign_in,
    total_revenue,
    viewer_region,
)
from tests.browser.portal_fixtures import Portal, running_portal

pytestmark = pytest.mark.browser

STARTER = ("starter@example.com", "embedportal-starter")  # may turn the capacity on
STARTING_MESSAGE = "Waking the reports up for you: about a minute."
OFF_WORDS = "The reports are switched off right now."
STARTING_WORDS = "Starting the capacity…"
BROKEN = ("Could not load", "CapacityNotActive", "ClientError")

NewPage = Callable[[], Page]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("portal-capacity")


@pytest.fixture(scope="module")
def portal(data_dir: Path) -> Iterator[Portal]:
    """A controller pass every half second, and a capacity that changes in two seconds."""
    env = {
        "EMBEDPORTAL_CAPACITY_CONTROLLER_SECONDS": "0.5",
        "EMBEDPORTAL_EMULATOR_CAPACITY_TRANSITION_SECONDS": "2",
    }
    with running_portal(data_dir, env) as running:
        yield running


@pytest.fixture(scope="module")
def data(portal: Portal, data_dir: Path) -> PortalData:
    database = data_dir / "embedportal.db"
    found = PortalData(
        path=database,
        env={
            "EMBEDPORTAL_ENVIRONMENT": "development",
            "EMBEDPORTAL_DATA_DIR": str(data_dir),
            "EMBEDPORTAL_DATABASE_URL": f"sqlite:///{database.as_posix()}",
        },
    )
    # The demo lets its viewers start a capacity; here only STARTER may.
    found.execute("UPDATE groups SET may_start_capacity = 0 WHERE name = ?", DEMO_GROUP)
    found.create_user(*STARTER, group=DEMO_GROUP, may_start_capacity=True)
    return found


@pytest.fixture
def arm(portal: Portal) -> Iterator[CapacityArm]:
    capacity = CapacityArm(portal.emulator_url)
    try:
        if capacity.state() != RUNNING:  # each test starts with the capacity running
            capacity.wait_for(PAUSED, timeout=20)
            capacity.act("resume")
            capacity.wait_for(RUNNING, timeout=20)
        yield capacity
    finally:
        capacity.close()


@pytest.fixture
def capacity_id(data: PortalData) -> Iterator[str]:
    """The demo capacity's id, with its idle pause off again after each test."""
    found = data.capacity_of(SALES_OVERVIEW_REPORT_ID)
    yield found
    data.set_capacity(found, idle_pause_minutes=None)


@pytest.fixture
def new_page(chromium: Browser) -> Iterator[NewPage]:
    """new_page() → a page in a browser context of its own, watched from its first document."""
    contexts: list[BrowserContext] = []

    def make() -> Page:
        context = chromium.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        page = context.new_page()
        watch_page(page)
        return page

    yield make
    for context in contexts:
        context.close()


def frame_of(page: Page, slot: str) -> FrameLocator:
    return page.frame_locator(f"#{slot} .report-frame iframe")


def revenue_card(page: Page, slot: str) -> Locator:
    return (
        frame_of(page, slot).locator(".card", has_text="Total revenue").get_by_test_id("card-value")
    )


def overlay(page: Page, slot: str, name: str) -> Locator:
    return page.locator(f'#{slot} [data-overlay="{name}"]')


def assert_no_broken_visuals(page: Page, slot: str) -> None:
    """Whatever the frame holds, nothing in it says a visual failed."""
    frames = page.locator(f"#{slot} .report-frame iframe")
    if frames.count():
        body = frame_of(page, slot).locator("body")
        for words in BROKEN:
            expect(body).not_to_contain_text(words)


def open_report_page(page: Page, url: str, email: str, password: str) -> float:
    """Sign in and open the demo report by its link; the document's marker."""
    sign_in(page, url, email, password)
    page.get_by_role("link", name=REPORT, exact=True).click()
    expect(page.get_by_role("heading", name=REPORT)).to_be_visible()
    return marker(page)


# --- (a) and (b): a wall screen, the idle pause, and a permitted person ------------------------


def test_an_idle_wall_screen_lets_the_capacity_pause_and_comes_back_when_someone_starts_it(
    portal: Portal,
    data: PortalData,
    arm: CapacityArm,
    capacity_id: str,
    new_page: NewPage,
) -> None:
    # The TV's account neither keeps the capacity on nor may turn it on; its tokens are
    # refreshed every minute ("Refresh token every 1 minute"), and the capacity pauses after
    # one idle minute.
    data.set_refresh_every_minutes(1)
    data.set_capacity(capacity_id, idle_pause_minutes=1, starting_message=STARTING_MESSAGE)
    try:
        tv = new_page()
        sign_in(tv, portal.url, *VIEWER)
        tv.goto(
            f"{portal.url}/tv/show?report={SALES_OVERVIEW_REPORT_ID}"
            f"&report={OPERATIONS_DASHBOARD_REPORT_ID}&interval=3600"
        )
        tv_marker = marker(tv)
        for slot in ("tv-slot-1", "tv-slot-2"):
            expect(revenue_card(tv, slot)).to_have_text(
                total_revenue(), timeout=REPORT_LOAD_TIMEOUT
            )
        tv.wait_for_function(
            "() => window.embedportalViewers.length === 2"
            " && window.embedportalViewers.every((v) => v.keeper?.snapshot().state === 'live')"
        )
        count_reloads(tv)
        # The push channel speaks for both reports: the server notes the screen's heartbeat.
        (url,) = events_urls(tv)
        assert f"report={SALES_OVERVIEW_REPORT_ID}" in url
        assert f"report={OPERATIONS_DASHBOARD_REPORT_ID}" in url

        # (a) Nobody uses the capacity: its idle minute passes and the controller pauses it.
        paused_after = arm.wait_for(PAUSED, timeout=150, page=tv)
        assert paused_after > 30, "the capacity paused too early: the screen kept nothing on"
        # The screen's next timed refresh is refused: it shows the "off" screen, not broken
        # visuals, on both slots (the hidden one keeps its token and screen up to date too).
        off = overlay(tv, "tv-slot-1", "capacityOff")
        expect(off).to_be_visible(timeout=90_000)
        expect(off).to_contain_text(OFF_WORDS)
        expect(off.get_by_text("CapacityNotActive", exact=True)).to_be_visible()
        expect(overlay(tv, "tv-slot-2", "capacityOff")).to_be_attached()
        tv.wait_for_function(
            "() => window.embedportalViewers.every("
            "(v) => v.keeper.snapshot().state === 'capacityOff')",
            timeout=90_000,
        )
        for slot in ("tv-slot-1", "tv-slot-2"):
            assert_no_broken_visuals(tv, slot)
        assert arm.state() == PAUSED, "the off screen's retries must not start the capacity"

        # (b) A person allowed to turn it on opens the report: the "starting" screen with the
        # capacity's own message, then the report, by itself.
        starter = new_page()
        starter_marker = open_report_page(starter, portal.url, *STARTER)
        starting = overlay(starter, "viewer", "capacityStarting")
        expect(starting).to_be_visible(timeout=15_000)
        expect(starting).to_contain_text(STARTING_WORDS)
        expect(starting).to_contain_text(STARTING_MESSAGE)
        expect(starting.locator("progress")).to_be_visible()
        expect(starter.locator("#viewer .report-frame iframe")).to_have_count(0)
        started_at = time.monotonic()
        arm.wait_for(RUNNING, timeout=30, page=starter)
        expect(revenue_card(starter, "viewer")).to_have_text(
            total_revenue(), timeout=REPORT_LOAD_TIMEOUT
        )
        expect(starting).to_be_hidden()
        loaded_after = time.monotonic() - started_at
        assert loaded_after < 15, f"the report took {loaded_after:.1f} s after the capacity ran"
        assert marker(starter) == starter_marker, "the page itself must not have been reloaded"
        states = slot_states(starter)["viewer"]
        assert "capacityStarting" in states and "failed" not in states, states
        assert_no_broken_visuals(starter, "viewer")
        # Using the report is activity: the keeper reports it (the server notes it in the
        # capacity's ledger).
        with starter.expect_request(
            lambda request: (
                request.url.endswith("/api/telemetry")
                and '"interaction"' in (request.post_data or "")
            ),
            timeout=10_000,
        ) as sent:
            frame_of(starter, "viewer").get_by_label(viewer_region()).check()
        assert f'"reportId": "{SALES_OVERVIEW_REPORT_ID}"' in (sent.value.post_data or "").replace(
            '":"', '": "'
        )

        # The wall screen comes back by itself: a token, a reload of each report, the numbers.
        # Its retries back off (up to a minute) while the capacity is off, hence the wait.
        expect(off).to_be_hidden(timeout=90_000)
        for slot in ("tv-slot-1", "tv-slot-2"):
            expect(revenue_card(tv, slot)).to_have_text(total_revenue(), timeout=75_000)
            assert_no_broken_visuals(tv, slot)
        tv.wait_for_function(
            "() => window.embedportalViewers.every((v) => v.keeper.snapshot().state === 'live')",
            timeout=75_000,
        )
        assert marker(tv) == tv_marker, "the wall screen must not have been reloaded"
        assert all(count >= 1 for count in reloads(tv)), reloads(tv)
        for slot, states in slot_states(tv).items():
            assert "capacityOff" in states and states[-1] == "live", (slot, states)
            assert "failed" not in states and "expired" not in states, (slot, states)
        assert keeper_states(tv) == ["live", "live"]
    finally:
        data.set_refresh_every_minutes(None)


# --- (c) a person who may not turn it on ------------------------------------------------------


def test_someone_who_may_not_start_the_capacity_waits_on_the_off_screen_until_it_runs(
    portal: Portal,
    data: PortalData,
    arm: CapacityArm,
    capacity_id: str,
    new_page: NewPage,
) -> None:
    # An administrator pauses the capacity in Azure; the portal sees it on its next look.
    arm.act("suspend")
    arm.wait_for(PAUSED, timeout=20)
    time.sleep(11)  # the portal remembers a capacity's state for up to 10 s

    viewer = new_page()
    viewer_marker = open_report_page(viewer, portal.url, *VIEWER)
    off = overlay(viewer, "viewer", "capacityOff")
    expect(off).to_be_visible(timeout=15_000)
    expect(off).to_contain_text(OFF_WORDS)
    expect(off).to_contain_text("The report comes back by itself")
    # No token, so no report: nothing on screen that could fail.
    expect(viewer.locator("#viewer .report-frame iframe")).to_have_count(0)
    viewer.wait_for_timeout(8_000)  # a few of its retries
    assert arm.state() == PAUSED, "a person who may not start it must not start it"
    expect(off).to_be_visible()
    expect(overlay(viewer, "viewer", "capacityStarting")).to_be_hidden()

    # The administrator turns it on again (Admin → Capacities); the report loads by itself.
    admin = new_page()
    sign_in(admin, portal.url, *ADMIN)
    admin.goto(f"{portal.url}/admin/capacities/{capacity_id}/turn-on")
    admin.get_by_role("button", name="Turn on", exact=True).click()
    expect(admin).to_have_url(f"{portal.url}/admin/capacities/{capacity_id}")
    arm.wait_for(RUNNING, timeout=20, page=viewer)
    expect(revenue_card(viewer, "viewer")).to_have_text(total_revenue(), timeout=60_000)
    expect(off).to_be_hidden()
    assert_no_broken_visuals(viewer, "viewer")
    assert marker(viewer) == viewer_marker, "the page itself must not have been reloaded"
    states = slot_states(viewer)["viewer"]
    assert states[-1] == "live" and "capacityOff" in states, states
    assert not {"failed", "capacityStarting", "expired"} & set(states), states


# --- a permitted person whose open report's capacity was paused -------------------------------


def test_a_permitted_person_on_the_off_screen_starts_the_capacity_with_check_again(
    portal: Portal,
    data: PortalData,
    arm: CapacityArm,
    capacity_id: str,
    new_page: NewPage,
) -> None:
    """A report kept open does not start a paused capacity by itself (or a forgotten tab
    would undo every pause); the person in front of it can, with the off screen's button."""
    page = new_page()
    page_marker = open_report_page(page, portal.url, *STARTER)
    expect(revenue_card(page, "viewer")).to_have_text(total_revenue(), timeout=REPORT_LOAD_TIMEOUT)
    page.wait_for_function("() => window.embedportalViewers[0].keeper?.snapshot().state === 'live'")
    count_reloads(page)

    arm.act("suspend")  # an administrator, in Azure
    arm.wait_for(PAUSED, timeout=20, page=page)
    # The visuals query again and fail in the frame; the viewer asks the portal at once.
    page.evaluate("() => window.embedportalViewers[0].report.refresh()")
    off = overlay(page, "viewer", "capacityOff")
    expect(off).to_be_visible(timeout=15_000)
    page.wait_for_timeout(6_000)
    assert arm.state() == PAUSED, "the open report alone must not start the capacity"

    off.get_by_role("button", name="Check again").click()
    starting = overlay(page, "viewer", "capacityStarting")
    expect(starting).to_be_visible(timeout=10_000)
    arm.wait_for(RUNNING, timeout=30, page=page)
    expect(starting).to_be_hidden(timeout=20_000)
    expect(revenue_card(page, "viewer")).to_have_text(total_revenue(), timeout=REPORT_LOAD_TIMEOUT)
    assert_no_broken_visuals(page, "viewer")
    assert marker(page) == page_marker, "the page itself must not have been reloaded"
    assert reloads(page) == [1], reloads(page)
    states = slot_states(page)["viewer"]
    assert states[-3:] == ["capacityOff", "capacityStarting", "live"], states


# --- the heartbeat ends with the access ------------------------------------------------------


def test_a_report_whose_access_is_removed_is_no_longer_named_on_the_push_channel(
    portal: Portal, data: PortalData, arm: CapacityArm, new_page: NewPage
) -> None:
    """Otherwise a wall screen left on its "access removed" screen would go on counting as an
    open viewer of that report's capacity."""
    tv = new_page()
    sign_in(tv, portal.url, *VIEWER)
    tv.goto(
        f"{portal.url}/tv/show?report={SALES_OVERVIEW_REPORT_ID}"
        f"&report={OPERATIONS_DASHBOARD_REPORT_ID}&interval=3600"
    )
    tv_marker = marker(tv)
    for slot in ("tv-slot-1", "tv-slot-2"):
        expect(revenue_card(tv, slot)).to_have_text(total_revenue(), timeout=REPORT_LOAD_TIMEOUT)
    tv.wait_for_function("() => window.__eventsUrls.length === 1")

    admin = new_page()
    sign_in(admin, portal.url, *ADMIN)
    admin.goto(f"{portal.url}/admin/reports/{OPERATIONS_DASHBOARD_REPORT_ID}")
    row = admin.locator("#grants tbody tr", has_text=f"Group: {DEMO_GROUP}")
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    admin.once("dialog", accept)  # the removal asks first, naming who loses access
    row.get_by_role("button", name="Remove").click()
    try:
        expect(admin.get_by_text("Access removed.")).to_be_visible()
        assert asked and f"for the group {DEMO_GROUP}?" in asked[0]
        expect(overlay(tv, "tv-slot-2", "revoked")).to_be_attached(timeout=10_000)
        tv.wait_for_function("() => window.__eventsUrls.length === 2", timeout=10_000)
        first, second = events_urls(tv)
        assert f"report={OPERATIONS_DASHBOARD_REPORT_ID}" in first
        assert f"report={OPERATIONS_DASHBOARD_REPORT_ID}" not in second
        assert f"report={SALES_OVERVIEW_REPORT_ID}" in second
        # The first report stays on screen: the access change made it check (a refresh), live.
        tv.wait_for_function(
            "() => window.embedportalViewers[0].keeper.snapshot().state === 'live'",
            timeout=10_000,
        )
        assert marker(tv) == tv_marker
    finally:  # grant the report to the group again
        admin.goto(f"{portal.url}/admin/reports/{OPERATIONS_DASHBOARD_REPORT_ID}")
        if not admin.locator("#grants tbody tr", has_text=f"Group: {DEMO_GROUP}").count():
            admin.get_by_label("User or group").select_option(label=DEMO_GROUP)
            admin.get_by_role("button", name="Grant", exact=True).click()
            expect(
                admin.get_by_text(f"Operations Dashboard granted to {DEMO_GROUP}.")
            ).to_be_visible()
