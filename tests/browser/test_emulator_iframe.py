"""The emulator's embed iframe, driven by the genuine powerbi-client in Chromium.

A host page (emulator_host/host.html, served at https://host.test by Playwright) embeds a
report from a real `embedportal emulator` subprocess, on both paths the portal uses:
the local one (the host builds the iframe and hands it to `new Report(...)`) and the
production one (`powerbi.embed` with an https://app.powerbi.com embed URL that Playwright
routes to the emulator). Tokens come from the emulator's own Entra and GenerateToken APIs, and
expected numbers from its data API, so every assertion is about what a person would see.

The host page is https and the context grants "local-network-access": Chromium's Local Network
Access checks block a public page from framing http://127.0.0.1 otherwise (a portal on
loopback, as in development, needs no grant).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import FrameLocator, Locator, Page, Route, expect

from embedportal.assets import vendor_file
from embedportal.emulator.demo import (
    DEMO_WORKSPACE_ID,
    REGION_MANAGER_ROLE,
    REGIONAL_DATASET_ID,
    REGIONAL_PERFORMANCE_REPORT_ID,
    SALES_OVERVIEW_REPORT_ID,
)
from embedportal.emulator.settings import EmulatorSettings
from embedportal.emulator.tokens import unverified_claims
from tests.emulator.harness import person_token
from tests.support.servers import RunningServer

EmulatorFactory = Callable[[Mapping[str, str]], RunningServer]  # conftest's emulator_server

pytestmark = pytest.mark.browser

HOST_ORIGIN = "https://host.test"
HOST_PAGE = Path(__file__).parent / "emulator_host" / "host.html"
POWERBI_SCOPE = "https://analysis.windows.net/powerbi/api/.default"
ARM_SCOPE = "https://management.azure.com/.default"

FAST_CAPACITY = {"EMBEDPORTAL_EMULATOR_CAPACITY_TRANSITION_SECONDS": "0.2"}
# Short enough to wait out, long enough that a fresh token outlives a render and the checks
# that follow it on a loaded CI machine (3 s tokens, rounded to whole seconds, did not).
SHORT_TOKENS = {**FAST_CAPACITY, "EMBEDPORTAL_EMULATOR_TOKEN_LIFETIME_SECONDS": "8"}
# People's Entra tokens that live 16 s, renewed through the hook 10 s before they expire.
SHORT_PERSON_TOKENS = {
    **FAST_CAPACITY,
    "EMBEDPORTAL_EMULATOR_ENTRA_MIN_LIFETIME_SECONDS": "16",
    "EMBEDPORTAL_EMULATOR_ENTRA_MAX_LIFETIME_SECONDS": "16",
    "EMBEDPORTAL_EMULATOR_TOKEN_HOOK_LEAD_SECONDS": "10",
}

OVERVIEW = "ReportSection1"
PRODUCTS = "ReportSection2"
OVERVIEW_VISUALS = (
    "totalRevenue",
    "unitsSold",
    "regionSlicer",
    "revenueByRegion",
    "revenueByMonth",
)

TOKEN_EXPIRED = {
    "message": "TokenExpired",
    "detailedMessage": "Access token has expired, resubmit with a new access token",
    "errorCode": "403",
    "level": 6,
}
CAPACITY_NOT_ACTIVE = {
    "message": "CapacityNotActive",
    "detailedMessage": "Capacity operation failed with error code CapacityNotActive",
    "errorCode": "503",
    "level": 6,
}


def region_filter(*regions: str) -> dict[str, Any]:
    return {
        "target": {"table": "Sales", "column": "Region"},
        "filterType": 1,
        "operator": "In",
        "values": list(regions),
    }


def money(value: float) -> str:
    """ "$#,0" in en-US, rounded half up as Intl.NumberFormat rounds."""
    return f"${Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP):,}"


# ------------------------------------------------------------------------------ the emulator


class EmulatorApi:
    """The emulator's public HTTP APIs, called as a portal would call them."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.settings = EmulatorSettings()
        self.http = httpx.Client(base_url=base_url, timeout=10.0)

    def entra_token(self, scope: str) -> str:
        response = self.http.post(
            f"/{self.settings.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.settings.client_id,
                "client_secret": self.settings.client_secret,
                "scope": scope,
            },
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def embed_token(
        self, report_id: str, identities: Sequence[dict[str, Any]] = ()
    ) -> tuple[str, float]:
        """GenerateToken (V2) for one report: the token and its expiry (epoch seconds)."""
        body: dict[str, Any] = {"reports": [{"id": report_id}]}
        if identities:
            body["identities"] = list(identities)
        response = self.http.post(
            "/v1.0/myorg/GenerateToken",
            json=body,
            headers={"Authorization": f"Bearer {self.entra_token(POWERBI_SCOPE)}"},
        )
        response.raise_for_status()
        answer = response.json()
        expires = datetime.strptime(answer["expiration"], "%Y-%m-%dT%H:%M:%SZ")
        return str(answer["token"]), expires.replace(tzinfo=UTC).timestamp()

    def query(
        self,
        token: str,
        report_id: str,
        page: str,
        visual: str,
        filters: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """What the data API answers a visual: the numbers the iframe must show."""
        response = self.http.post(
            f"/emulator/api/reports/{report_id}/query",
            json={"page": page, "visual": visual, "filters": list(filters)},
            headers={"Authorization": f"EmbedToken {token}"},
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def card(self, token: str, report_id: str, visual: str, *filters: dict[str, Any]) -> Any:
        return self.query(token, report_id, OVERVIEW, visual, filters)["rows"][0][0]

    def _capacity_url(self, action: str = "") -> str:
        settings = self.settings
        return (
            f"/subscriptions/{settings.subscription_id}/resourceGroups/{settings.resource_group}"
            f"/providers/Microsoft.PowerBIDedicated/capacities/{settings.capacity_name}"
            f"{action}?api-version=2021-01-01"
        )

    def capacity_state(self) -> str:
        headers = {"Authorization": f"Bearer {self.entra_token(ARM_SCOPE)}"}
        response = self.http.get(self._capacity_url(), headers=headers)
        response.raise_for_status()
        return str(response.json()["properties"]["state"])

    def capacity_action(self, action: str, final_state: str) -> None:
        """Suspend or resume the capacity through ARM and wait until it gets there."""
        headers = {"Authorization": f"Bearer {self.entra_token(ARM_SCOPE)}"}
        response = self.http.post(self._capacity_url(f"/{action}"), headers=headers)
        assert response.status_code in (200, 202), response.text
        deadline = time.monotonic() + 10
        while self.capacity_state() != final_state:
            assert time.monotonic() < deadline, f"capacity never reached {final_state}"
            time.sleep(0.1)

    def person_token(self, email: str = "north@example.com") -> str:
        """A person's own Entra token (embed for your organization), from a sign-in."""
        return person_token(self.http, self.settings, email)

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="module")
def emulator(emulator_server: EmulatorFactory) -> Iterator[EmulatorApi]:
    api = EmulatorApi(emulator_server(FAST_CAPACITY).base_url)
    yield api
    api.close()


@pytest.fixture(scope="module")
def short_lived(emulator_server: EmulatorFactory) -> Iterator[EmulatorApi]:
    """An emulator whose embed tokens live 3 seconds."""
    api = EmulatorApi(emulator_server(SHORT_TOKENS).base_url)
    yield api
    api.close()


# ------------------------------------------------------------------------------ the host page


class HostedReport:
    """The host page and the report embedded in it, seen from the test."""

    def __init__(self, page: Page) -> None:
        self.page = page

    @property
    def frame(self) -> FrameLocator:
        return self.page.frame_locator("#report iframe")

    def visual(self, name: str) -> Locator:
        return self.frame.locator(f'[data-visual-name="{name}"]')

    def card(self, name: str) -> Locator:
        return self.visual(name).get_by_test_id("card-value")

    def events(self, name: str) -> list[Any]:
        details: list[Any] = self.page.evaluate(
            "name => hostEvents.filter(e => e.name === name).map(e => e.detail)", name
        )
        return details

    def wait_for_event(self, name: str, count: int = 1, timeout: float = 15_000) -> Any:
        """The `count`-th `name` event's detail, once it has arrived."""
        self.page.wait_for_function(
            "([name, count]) => hostEvents.filter(e => e.name === name).length >= count",
            arg=[name, count],
            timeout=timeout,
        )
        return self.events(name)[count - 1]

    def run(self, script: str, arg: Any = None) -> Any:
        """Run an async function body in the host page, with `report`, `models` and `arg`."""
        return self.page.evaluate(f"async (arg) => {{ {script} }}", arg)


def serve_host(route: Route) -> None:
    if urlsplit(route.request.url).path == "/powerbi.js":
        route.fulfill(path=vendor_file("powerbi.js"), content_type="text/javascript")
    else:
        route.fulfill(path=HOST_PAGE, content_type="text/html")


def open_report(
    page: Page,
    emulator: EmulatorApi,
    token: str,
    *,
    report_id: str = SALES_OVERVIEW_REPORT_ID,
    production: bool = False,
    wait_for: str | None = "rendered",
    **options: Any,
) -> HostedReport:
    """Open the host page and embed a report; by default wait until it has rendered."""
    page.context.grant_permissions(["local-network-access"], origin=HOST_ORIGIN)
    page.route(f"{HOST_ORIGIN}/**", serve_host)
    if production:

        def to_emulator(route: Route) -> None:
            parts = urlsplit(route.request.url)
            local = emulator.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
            route.fulfill(response=route.fetch(url=local))

        page.route("https://app.powerbi.com/**", to_emulator)
        base = "https://app.powerbi.com"
    else:
        base = emulator.base_url
    page.goto(f"{HOST_ORIGIN}/host.html")
    embed_options = {
        "reportId": report_id,
        "groupId": DEMO_WORKSPACE_ID,
        "embedUrl": f"{base}/reportEmbed?reportId={report_id}&groupId={DEMO_WORKSPACE_ID}",
        "token": token,
        **options,
    }
    page.evaluate(
        "options => (options.production ? embedProduction : embedLocal)(options)",
        {**embed_options, "production": production},
    )
    report = HostedReport(page)
    if wait_for:
        report.wait_for_event(wait_for)
    return report


def wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()) + 0.3)


def expect_overview_numbers(report: HostedReport, emulator: EmulatorApi, token: str) -> None:
    revenue = emulator.card(token, SALES_OVERVIEW_REPORT_ID, "totalRevenue")
    units = emulator.card(token, SALES_OVERVIEW_REPORT_ID, "unitsSold")
    expect(report.card("totalRevenue")).to_have_text(money(revenue))
    expect(report.card("unitsSold")).to_have_text(f"{units:,}")


# ------------------------------------------------------------------------------ loading


def test_local_path_loads_renders_and_shows_real_numbers(
    page: Page, emulator: EmulatorApi, page_problems: Any
) -> None:
    token, _ = emulator.embed_token(SALES_OVERVIEW_REPORT_ID)
    report = open_report(page, emulator, token)

    assert report.events("loaded") == [None]
    assert report.events("error") == []
    expect_overview_numbers(report, emulator, token)
    slicer = report.visual("regionSlicer")
    expect(slicer.get_by_role("checkbox")).to_have_count(5)
    expect(slicer.get_by_role("checkbox", name="North")).not_to_be_checked()
    expect(report.visual("revenueByRegion").get_by_role("img")).to_be_visible()
    expect(report.visual("revenueByMonth").get_by_role("img")).to_be_visible()
    expect(report.frame.get_by_role("tab")).to_have_text(["Overview", "Products"])
    expect(report.frame.get_by_role("tab", name="Overview")).to_have_attribute(
        "aria-selected", "true"
    )
    # The token travels in postMessage and request headers only: never in a URL or a log.
    src = page.locator("#report iframe").get_attribute("src") or ""
    assert src.startswith(f"{emulator.base_url}/reportEmbed?reportId=")
    assert token not in src
    assert not [text for text in page_problems.console if token in text]


def test_production_path_routes_app_powerbi_com_to_the_emulator(
    page: Page, emulator: EmulatorApi
) -> None:
    token, _ = emulator.embed_token(SALES_OVERVIEW_REPORT_ID)
    report = open_report(page, emulator, token, production=True)

    src = page.locator("#report iframe").get_attribute("src") or ""
    assert src.startswith("https://app.powerbi.com/reportEmbed?reportId=")
    assert "&uid=" in src
    assert report.events("loaded") == [None]
    expect_overview_numbers(report, emulator, token)


def test_phased_load_then_render(page: Page, emulator: EmulatorApi) -> None:
    token, _ = emulator.embed_token(SALES_OVERVIEW_REPORT_ID)
    report = open_report(page, emulator, token, production=True, phased=True, wait_for="loaded")
    expect(report.visual("totalRevenue")).to_be_visible()
    assert report.events("rendered") == []

    report.run("await report.render();")
    report.wait_for_event("rendered")
    expect_overview_numbers(report, emulator, token)


def test_numbers_follow_the_format_locale(page: Page, emulator: EmulatorApi) -> None:
    token, _ = emulator.embed_token(SALES_OVERVIEW_REPORT_ID)
    report = open_report(page, emulator, token, production=True, formatLocale="de-DE")
    revenue = emulator.card(token, SALES_OVERVIEW_REPORT_ID, "totalRevenue")
    german = money(revenue).removeprefix("$").replace(",", ".")
    expect(report.card("totalRevenue")).to_have_text(f"{german}\u00a0$")
    assert "formatLocale=de-DE" in (page.locator("#report iframe").get_attribute("src") or "")


def test_set_access_token_and_reload(page: Page, emulator: EmulatorApi) -> None:
    first, _ = emulator.embed_token(SALES_OVERVIEW_REPORT_ID)
    second, _ = emulator.embed_token(SALES_OVERVIEW_REPORT_ID)
    report = open_report(page, emulator, first)

    assert report.run("await report.setAccessToken(arg); return report.config.accessToken;", second)
    report.run("await report.reload();")
    report.wait_for_event("loaded", 2)
    report.wait_for_event("rendered", 2)
    expect_overview_numbers(report, emulator, second)
    assert report.events("error") == []


def test_requests_the_emulator_does_not_know_are_refused(page: Page, emulator: EmulatorApi) -> None:
    token, _ = emulator.embed_token(SALES_OVERVIEW_REPORT_ID)
    report = open_report(page, emulator, token)

    # Saving a report is an editor's act: the emulator embeds for viewing only.
    refusal = report.run("try { await report.save(); return null; } catch (e) { return e; }")
    assert refusal == {
        "message": "NotSupported",
        "detailedMessage": "POST /report/save is not emulated",
    }


# ------------------------------------------------------------------------------ pages


def test_pages_set_page_and_page_tabs(page: Page, emulator: EmulatorApi) -> None:
    token, _ = emulator.embed_token(SALES_OVERVIEW_REPORT_ID)
    report = open_report(page, emulator, token)

    pages = report.run(
        "return (await report.getPages()).map(p => "
        "({name: p.name, displayName: p.displayName, isActive: p.isActive, "
        "visibility: p.visibility}));"
    )
    assert pages == [
        {"name": OVERVIEW, "displayName": "Overview", "isActive": True, "visibility": 0},
        {"name": PRODUCTS, "displayName": "Products", "isActive": False, "visibility": 0},
    ]

    report.run("await report.setPage(arg);", PRODUCTS)
    changed = report.wait_for_event("pageChanged")
    assert changed == {
        "newPage": {"name": PRODUCTS, "displayName": "Products"},
        "oldPage": {"name": OVERVIEW, "displayName": "Overview"},
    }
    report.wait_for_event("rendered", 2)
    table = report.visual("productTable")
    expect(table.get_by_role("columnheader")).to_have_text(["Product", "Units", "Revenue"])
    expect(table.locator("tbody tr")).to_have_count(12)
    expect(table.locator("tfoot")).to_contain_text("Total")
    assert report.run("return (await report.getActivePage()).name;") == PRODUCTS
    visuals = report.run(
        "const page = await report.getActivePage();"
        "return (await page.getVisuals()).map(v => [v.name, v.type]);"
    )
    assert visuals == [["productTable", "tableEx"], ["revenueByCategory", "clusteredBarChart"]]

    refusal = report.run(
        "try { await report.setPage('NoSuchPage'); return null; } catch (e) { return e; }"
    )
    assert refusal["message"] == "PowerBIEntityNotFound"

    report.frame.get_by_role("tab", name="Overview").click()
    assert report.wait_for_event("pageChanged", 2)["newPage"]["name"] == OVERVIEW
    report.wait_for_event("rendered", 3)
    expect_overview_numbers(report, emulator, token)


# ------------------------------------------------------------------------------ filters


def test_slicer_filters_the_page(page: Page, emulator: EmulatorApi) -> None:
    token, _ = emulator.embed_token(SALES_OVERVIEW_REPORT_ID)
    report = open_report(page, emulator, token)
    north = emulator.card(token, SALES_OVERVIEW_REPORT_ID, "totalRevenue", region_filter("North"))
    total = emulator.card(token, SALES_OVERVIEW_REPORT_ID, "totalRevenue")
    assert north != total

    report.visual("regionSlicer").get_by_role("checkbox", name="North").check()
    applied = report.wait_for_event("filtersApplied")
    assert applied["visual"]["name"] == "regionSlicer"
    assert [(f["target"], f["operator"], f["values"]) for f in applied["filters"]] == [
        ({"table": "Sales", "column": "Region"}, "In", ["North"])
    ]
    expect(report.card("totalRevenue")).to_have_text(money(north))

    report.visual("regionSlicer").get_by_role("checkbox", name="North").uncheck()
    assert report.wait_for_event("filtersApplied", 2)["filters"] == []
    expect(report.card("totalRevenue")).to_have_text(money(total))


def test_report_filters_through_the_sdk(page: Page, emulator: EmulatorApi) -> None:
    token, _ = emulator.embed_token(SALES_OVERVIEW_REPORT_ID)
    report = open_report(page, emulator, token)

    def revenue(*filters: dict[str, Any]) -> str:
        return money(emulator.card(token, SALES_OVERVIEW_REPORT_ID, "totalRevenue", *filters))

    report.run(
        "await report.setFilters([new models.BasicFilter("
        "{table: 'Sales', column: 'Region'}, 'In', ['South'])]);"
    )
    report.wait_for_event("filtersApplied")
    expect(report.card("totalRevenue")).to_have_text(revenue(region_filter("South")))
    filters = report.run("return await report.getFilters();")
    assert [(f["target"]["column"], f["values"]) for f in filters] == [("Region", ["South"])]

    report.run(
        "await report.updateFilters(models.FiltersOperations.Replace, [new models.BasicFilter("
        "{table: 'Sales', column: 'Region'}, 'In', ['East', 'West'])]);"
    )
    report.wait_for_event("filtersApplied", 2)
    expect(report.card("totalRevenue")).to_have_text(revenue(region_filter("East", "West")))

    bikes = {
        "target": {"table": "Sales", "column": "Category"},
        "filterType": 1,
        "operator": "In",
        "values": ["Bikes"],
    }
    report.run(
        "await report.updateFilters(models.FiltersOperations.Add, [new models.BasicFilter("
        "{table: 'Sales', column: 'Category'}, 'In', ['Bikes'])]);"
    )
    report.wait_for_event("filtersApplied", 3)
    expect(report.card("totalRevenue")).to_have_text(revenue(region_filter("East", "West"), bikes))

    report.run("await report.removeFilters();")
    report.wait_for_event("filtersApplied", 4)
    expect(report.card("totalRevenue")).to_have_text(revenue())
    assert report.run("return await report.getFilters();") == []

    refusal = report.run(
        "try {"
        "  await report.updateFilters(models.FiltersOperations.Add, [new models.AdvancedFilter("
        "    {table: 'Sales', column: 'Units'}, 'And', [{operator: 'GreaterThan', value: 3}])]);"
        "  return null;"
        "} catch (e) { return e; }"
    )
    assert refusal == [{"message": "Only basic filters (filterType 1) are emulated"}]


# ------------------------------------------------------------------------------ selection


def test_clicking_a_bar_raises_data_selected(page: Page, emulator: EmulatorApi) -> None:
    token, _ = emulator.embed_token(SALES_OVERVIEW_REPORT_ID)
    report = open_report(page, emulator, token)
    answer = emulator.query(token, SALES_OVERVIEW_REPORT_ID, OVERVIEW, "revenueByRegion")
    top_region, top_revenue = answer["rows"][0]

    canvas = report.visual("revenueByRegion").locator("canvas")
    first_bar = canvas.evaluate(
        "canvas => { const bar = Chart.getChart(canvas).getDatasetMeta(0).data[0];"
        " return {x: (bar.x + bar.base) / 2, y: bar.y}; }"
    )
    canvas.click(position=first_bar)

    selected = report.wait_for_event("dataSelected")
    assert selected["visual"] == {
        "name": "revenueByRegion",
        "title": "Revenue by region",
        "type": "clusteredBarChart",
    }
    assert selected["page"] == {"name": OVERVIEW, "displayName": "Overview"}
    assert selected["report"]["id"] == SALES_OVERVIEW_REPORT_ID
    [point] = selected["dataPoints"]
    [identity] = point["identity"]
    assert identity["target"] == {"table": "Sales", "column": "Region"}
    assert identity["equals"] == top_region
    assert point["values"][0]["value"] == top_revenue
    assert point["values"][0]["formattedValue"] == money(top_revenue)
    assert selected["regions"] == [] and selected["filters"] == []
    assert report.wait_for_event("selectionChanged")["dataPoints"] == selected["dataPoints"]
    assert report.wait_for_event("visualClicked")["visual"]["name"] == "revenueByRegion"


# ------------------------------------------------------------------------------ tokens


def test_expired_token_shows_the_error_and_a_new_token_recovers(
    page: Page, short_lived: EmulatorApi
) -> None:
    token, expires = short_lived.embed_token(SALES_OVERVIEW_REPORT_ID)
    report = open_report(page, short_lived, token)
    assert report.events("error") == []
    expect_overview_numbers(report, short_lived, token)

    wait_until(expires)
    report.run("await report.refresh();")
    assert report.wait_for_event("error") == TOKEN_EXPIRED
    report.wait_for_event("rendered", 2)
    message = report.frame.get_by_text(
        "Could not load data for this visual: ClientError_TokenExpired"
    )
    expect(message).to_have_count(len(OVERVIEW_VISUALS))
    assert report.events("error") == [TOKEN_EXPIRED]  # one per render pass, not per visual

    fresh, _ = short_lived.embed_token(SALES_OVERVIEW_REPORT_ID)
    report.run("await report.setAccessToken(arg);", fresh)
    report.run("await report.refresh();")
    report.wait_for_event("rendered", 3)
    expect(message).to_have_count(0)
    expect_overview_numbers(report, short_lived, fresh)
    assert report.events("error") == [TOKEN_EXPIRED]


def test_report_opened_with_an_expired_token_recovers_on_reload(
    page: Page, short_lived: EmulatorApi
) -> None:
    token, expires = short_lived.embed_token(SALES_OVERVIEW_REPORT_ID)
    wait_until(expires)
    report = open_report(page, short_lived, token, wait_for="error")
    assert report.events("error") == [TOKEN_EXPIRED]
    assert report.events("loaded") == []
    expect(
        report.frame.get_by_text("Could not load this report: ClientError_TokenExpired")
    ).to_be_visible()

    fresh, _ = short_lived.embed_token(SALES_OVERVIEW_REPORT_ID)
    # powerbi-client drops a /report/load sent within 100 ms of the previous one; with the
    # emulator's answers warm, the failed load above can be that recent.
    page.wait_for_timeout(150)
    report.run("await report.setAccessToken(arg); await report.reload();", fresh)
    report.wait_for_event("rendered")
    assert report.events("loaded") == [None]
    expect_overview_numbers(report, short_lived, fresh)


def test_token_provider_hook_supplies_the_new_token(page: Page, short_lived: EmulatorApi) -> None:
    token, expires = short_lived.embed_token(SALES_OVERVIEW_REPORT_ID)
    report = open_report(page, short_lived, token, tokenProvider=True)
    expect_overview_numbers(report, short_lived, token)

    wait_until(expires)
    fresh, _ = short_lived.embed_token(SALES_OVERVIEW_REPORT_ID)
    page.evaluate("token => { window.providerToken = token; }", fresh)
    report.run("await report.refresh();")
    report.wait_for_event("rendered", 2)
    expect_overview_numbers(report, short_lived, fresh)
    assert page.evaluate("window.providerCalls") == 1
    assert report.events("error") == []


@pytest.fixture(scope="module")
def short_people(emulator_server: EmulatorFactory) -> Iterator[EmulatorApi]:
    api = EmulatorApi(emulator_server(SHORT_PERSON_TOKENS).base_url)
    yield api
    api.close()


class PersonTokenBackEnd:
    """The host's own back end for its token provider (a route on the host's origin): a fresh
    Entra token for the person at each call while up, 503 while down."""

    URL = f"{HOST_ORIGIN}/person-token"

    def __init__(self, page: Page, emulator: EmulatorApi) -> None:
        self.up = True
        self.emulator = emulator
        page.route(self.URL, self._answer)

    def _answer(self, route: Route) -> None:
        if self.up:
            route.fulfill(status=200, body=self.emulator.person_token(), content_type="text/plain")
        else:
            route.fulfill(status=503, body="down")


def open_person_report(
    page: Page, emulator: EmulatorApi, *, up: bool
) -> tuple[HostedReport, PersonTokenBackEnd, float]:
    token = emulator.person_token()
    report = open_report(
        page, emulator, token, tokenProvider=True, tokenProviderUrl=PersonTokenBackEnd.URL
    )
    back_end = PersonTokenBackEnd(page, emulator)
    back_end.up = up
    return report, back_end, float(unverified_claims(token)["exp"])


def test_a_persons_token_is_renewed_through_the_hook_before_it_expires(
    page: Page, short_people: EmulatorApi
) -> None:
    report, _, expires = open_person_report(page, short_people, up=True)
    expect(report.card("totalRevenue")).not_to_have_text("")
    # Asked the lead before the expiry: no data call had to fail first.
    page.wait_for_function("window.providerCalls >= 1", timeout=15_000)
    assert time.time() < expires
    wait_until(expires)
    report.run("await report.refresh();")
    report.wait_for_event("rendered", 2)
    # Drawn with the new token, past the first one's expiry, with no error on the way.
    assert report.events("error") == []


def test_a_host_that_answers_null_gets_the_expiry_then_recovers(
    page: Page, short_people: EmulatorApi
) -> None:
    report, back_end, expires = open_person_report(page, short_people, up=False)
    # The host's back end is down, so its provider answers null: the iframe asks again, backing
    # off, and when the token dies the visuals say so.
    wait_until(expires)
    assert report.wait_for_event("error", timeout=15_000) == TOKEN_EXPIRED
    report.wait_for_event("rendered", 2)  # the pass that showed the expiry
    assert page.evaluate("window.providerCalls") >= 2
    back_end.up = True
    # The next ask (at most a minute later) gets a token, and the report draws again by itself.
    report.wait_for_event("rendered", 3, timeout=75_000)
    expect(report.card("totalRevenue")).not_to_have_text("")
    assert len(report.events("error")) == 1


# ------------------------------------------------------------------------------ row-level security


def test_row_level_security_shows_each_identity_its_region(
    page: Page, emulator: EmulatorApi
) -> None:
    shown = {}
    for region in ("North", "South"):
        identity = {
            "username": f"{region.lower()}@example.com",
            "roles": [REGION_MANAGER_ROLE],
            "datasets": [REGIONAL_DATASET_ID],
        }
        token, _ = emulator.embed_token(REGIONAL_PERFORMANCE_REPORT_ID, [identity])
        revenue = emulator.card(token, REGIONAL_PERFORMANCE_REPORT_ID, "regionRevenue")
        unfiltered = emulator.card(
            token, REGIONAL_PERFORMANCE_REPORT_ID, "regionRevenue", region_filter(region)
        )
        assert revenue == unfiltered  # the identity sees its region only

        report = open_report(page, emulator, token, report_id=REGIONAL_PERFORMANCE_REPORT_ID)
        expect(report.card("regionRevenue")).to_have_text(money(revenue))
        shown[region] = report.card("regionRevenue").inner_text()
    assert shown["North"] != shown["South"]


# ------------------------------------------------------------------------------ capacity


def test_paused_capacity_shows_the_error_and_resuming_recovers(
    page: Page, emulator: EmulatorApi
) -> None:
    token, _ = emulator.embed_token(SALES_OVERVIEW_REPORT_ID)
    report = open_report(page, emulator, token)
    emulator.capacity_action("suspend", "Paused")
    try:
        report.run("await report.refresh();")
        assert report.wait_for_event("error") == CAPACITY_NOT_ACTIVE
        report.wait_for_event("rendered", 2)
        expect(
            report.frame.get_by_text("Could not load data for this visual: CapacityNotActive")
        ).to_have_count(len(OVERVIEW_VISUALS))
        expect(report.visual("totalRevenue")).to_contain_text("capacity")
        assert report.events("error") == [CAPACITY_NOT_ACTIVE]
    finally:
        emulator.capacity_action("resume", "Succeeded")

    report.run("await report.refresh();")
    report.wait_for_event("rendered", 3)
    expect_overview_numbers(report, emulator, token)


# ------------------------------------------------------------------------------ HTTP


def test_embed_page_may_be_framed_and_runs_only_its_own_scripts(emulator: EmulatorApi) -> None:
    response = emulator.http.get(
        f"/reportEmbed?reportId={SALES_OVERVIEW_REPORT_ID}&groupId={DEMO_WORKSPACE_ID}"
    )
    assert response.status_code == 200
    assert "x-frame-options" not in response.headers
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors *" in policy
    assert "script-src 'self'" in policy
    assert "/emulator-static/vendor/chart.umd.js?v=" in response.text

    chart = emulator.http.get("/emulator-static/vendor/chart.umd.js")
    assert chart.status_code == 200
    assert "javascript" in chart.headers["content-type"]
    assert emulator.http.get("/emulator-static/emu-report.js").status_code == 200
    assert emulator.http.get("/emulator-static/vendor/powerbi.js").status_code == 404
    assert emulator.http.get("/emulator-static/%2e%2e/embed.py").status_code == 404
