"""The emulator's demo content: two workspaces, each on a capacity of its own (a Power BI
Embedded A SKU and a Fabric F SKU), three datasets over the same generated sales rows (one with
row-level security), and four reports.

Everything is deterministic: ids are uuid5 of stable names and the rows come from a seeded
random generator, so every emulator process (and every test) sees the same numbers.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Literal

from embedportal.emulator.query import (
    Column,
    Filter,
    GroupBy,
    Measure,
    Security,
    Table,
    VisualQuery,
)

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/embedportal/emulator")


def stable_id(kind: str, name: str) -> str:
    """The id an item of demo content always has: uuid5 of its kind and name."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{name}"))


DEMO_WORKSPACE_NAME = "Demo workspace"
DEMO_WORKSPACE_ID = stable_id("workspace", DEMO_WORKSPACE_NAME)
SALES_DATASET_ID = stable_id("dataset", "Sales")
REGIONAL_DATASET_ID = stable_id("dataset", "Regional Sales")
SALES_OVERVIEW_REPORT_ID = stable_id("report", "Sales Overview")
REGIONAL_PERFORMANCE_REPORT_ID = stable_id("report", "Regional Performance")
OPERATIONS_DASHBOARD_REPORT_ID = stable_id("report", "Operations Dashboard")
# The second workspace, on the second (Fabric) capacity.
FINANCE_WORKSPACE_NAME = "Finance workspace"
FINANCE_WORKSPACE_ID = stable_id("workspace", FINANCE_WORKSPACE_NAME)
FINANCE_DATASET_ID = stable_id("dataset", "Finance Sales")
FINANCE_SUMMARY_REPORT_ID = stable_id("report", "Finance Summary")

# Which emulated capacity a workspace is on (the names and ids come from the settings).
CapacitySlot = Literal["dedicated", "fabric"]
REGION_MANAGER_ROLE = "Region Manager"

SALES_TABLE = "Sales"
REGIONS = ("North", "South", "East", "West", "Central")
CATEGORIES: Mapping[str, tuple[tuple[str, float], ...]] = {
    "Bikes": (("Road Bike", 1450.0), ("Mountain Bike", 1190.0), ("City Bike", 640.0)),
    "Accessories": (("Helmet", 79.0), ("Bike Light", 34.0), ("Lock", 42.0)),
    "Clothing": (("Jersey", 59.0), ("Gloves", 24.0), ("Rain Jacket", 119.0)),
    "Components": (("Wheel Set", 389.0), ("Saddle", 69.0), ("Pedals", 49.0)),
}
FIRST_DAY = date(2024, 1, 1)
LAST_DAY = date(2025, 12, 31)
_SEED = 20240101

# USERNAME() → region, the mapping table the "Region Manager" role filters through.
REGION_MANAGERS: Mapping[str, str] = {f"{region.lower()}@example.com": region for region in REGIONS}


@lru_cache(maxsize=1)
def sales_table() -> Table:
    """About 26k rows of daily sales: Date, Region, Product, Category, Units, Revenue."""
    rng = random.Random(_SEED)
    region_weight = {"North": 1.25, "South": 0.85, "East": 1.1, "West": 0.95, "Central": 0.7}
    rows: list[tuple[str, str, str, str, int, float]] = []
    day = FIRST_DAY
    while day <= LAST_DAY:
        # Busier in spring and summer, and on weekends; a little growth from year to year.
        season = 1.0 + 0.35 * (1 if 4 <= day.month <= 8 else 0) - 0.2 * (day.month in (1, 12))
        weekend = 1.25 if day.weekday() >= 5 else 1.0
        growth = 1.0 + 0.12 * (day.year - FIRST_DAY.year)
        for region in REGIONS:
            for category, products in CATEGORIES.items():
                for product, price in products:
                    if rng.random() > 0.6:  # no sale of this product here today
                        continue
                    expected = region_weight[region] * season * weekend * growth
                    units = max(1, round(rng.expovariate(1 / (6.0 * expected))))
                    if category == "Bikes":
                        units = max(1, units // 3)
                    discount = rng.choice((0.0, 0.0, 0.0, 0.05, 0.1))
                    revenue = round(units * price * (1 - discount), 2)
                    rows.append((day.isoformat(), region, product, category, units, revenue))
        day += timedelta(days=1)
    columns = (
        Column("Date", "date"),
        Column("Region", "text"),
        Column("Product", "text"),
        Column("Category", "text"),
        Column("Units", "integer"),
        Column("Revenue", "currency"),
    )
    return Table(SALES_TABLE, columns, tuple(rows))


# --- datasets and row-level security -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RlsRole:
    """A role whose rule keeps the rows whose `column` is one of the values `mapping` gives
    USERNAME() (compared case-insensitively, as DAX compares text)."""

    name: str
    column: str
    mapping: Mapping[str, str]

    def security_filters(self, username: str) -> tuple[Filter, ...]:
        wanted = username.casefold()
        values = tuple(sorted(v for user, v in self.mapping.items() if user.casefold() == wanted))
        return (Filter(SALES_TABLE, self.column, "In", values),)


@dataclass(frozen=True, slots=True)
class Dataset:
    id: str
    name: str
    workspace_id: str
    roles: tuple[RlsRole, ...] = ()
    is_effective_identity_required: bool = False
    is_effective_identity_roles_required: bool = False

    def role(self, name: str) -> RlsRole | None:
        return next((role for role in self.roles if role.name == name), None)

    def security(self, username: str | None, roles: tuple[str, ...]) -> Security:
        """The row-level security of an identity (None: no identity, no RLS → every row)."""
        if not self.is_effective_identity_required:
            return None
        if username is None:
            return ()
        return tuple(
            found.security_filters(username)
            for name in roles
            if (found := self.role(name)) is not None
        )


VisualType = Literal["card", "bar", "line", "table", "slicer"]


@dataclass(frozen=True, slots=True)
class Visual:
    name: str
    title: str
    type: VisualType
    layout: tuple[int, int, int, int]  # x, y, width, height in a 12-column grid
    query: VisualQuery

    def as_json(self) -> dict[str, object]:
        x, y, width, height = self.layout
        answer: dict[str, object] = {
            "name": self.name,
            "title": self.title,
            "type": self.type,
            "layout": {"x": x, "y": y, "width": width, "height": height},
            # The table a click's data point belongs to (dataSelected identities name it).
            "table": SALES_TABLE,
        }
        if self.type == "slicer" and self.query.distinct is not None:
            answer["target"] = {"table": SALES_TABLE, "column": self.query.distinct}
        return answer


@dataclass(frozen=True, slots=True)
class Page:
    name: str
    display_name: str
    visuals: tuple[Visual, ...]

    def visual(self, name: str) -> Visual | None:
        return next((visual for visual in self.visuals if visual.name == name), None)


@dataclass(frozen=True, slots=True)
class Report:
    id: str
    name: str
    workspace_id: str
    dataset_id: str
    pages: tuple[Page, ...]

    def page(self, name: str) -> Page | None:
        return next((page for page in self.pages if page.name == name), None)

    def definition(self) -> dict[str, object]:
        """The report as the private data API hands it to the iframe."""
        return {
            "id": self.id,
            "name": self.name,
            "datasetId": self.dataset_id,
            "pages": [
                {
                    "name": page.name,
                    "displayName": page.display_name,
                    "visuals": [visual.as_json() for visual in page.visuals],
                }
                for page in self.pages
            ],
        }


@dataclass(frozen=True, slots=True)
class Workspace:
    id: str
    name: str
    capacity: CapacitySlot = "dedicated"


@dataclass(frozen=True, slots=True)
class DemoContent:
    workspaces: Mapping[str, Workspace]
    datasets: Mapping[str, Dataset]
    reports: Mapping[str, Report]
    table: Table = field(repr=False)

    def reports_in(self, workspace_id: str) -> list[Report]:
        return [report for report in self.reports.values() if report.workspace_id == workspace_id]

    def datasets_in(self, workspace_id: str) -> list[Dataset]:
        return [item for item in self.datasets.values() if item.workspace_id == workspace_id]


# --- the reports ---------------------------------------------------------------------------------

REVENUE = Measure("Revenue", "sum", "Revenue", "currency", "$#,0")
UNITS = Measure("Units", "sum", "Units", "integer", "#,0")
ORDER_LINES = Measure("Order lines", "count", None, "integer", "#,0")
BY_MONTH = GroupBy("Date", by_month=True, label="Month")
# Power BI's name for a report's first page (later ones count on: ReportSection2, …).
FIRST_PAGE = "ReportSection1"


def _card(name: str, title: str, measure: Measure, at: tuple[int, int, int, int]) -> Visual:
    return Visual(name, title, "card", at, VisualQuery(measures=(measure,)))


def _bar(name: str, title: str, column: str, at: tuple[int, int, int, int]) -> Visual:
    query = VisualQuery((REVENUE,), GroupBy(column), order="measure_desc")
    return Visual(name, title, "bar", at, query)


def _line(name: str, title: str, at: tuple[int, int, int, int]) -> Visual:
    return Visual(name, title, "line", at, VisualQuery((REVENUE,), BY_MONTH))


def _table(name: str, title: str, column: str, at: tuple[int, int, int, int]) -> Visual:
    query = VisualQuery((UNITS, REVENUE), GroupBy(column), order="measure_desc", order_measure=1)
    return Visual(name, title, "table", at, query)


def _one_page_report(
    report_id: str,
    name: str,
    workspace_id: str,
    dataset_id: str,
    page_title: str,
    *visuals: Visual,
) -> Report:
    return Report(
        report_id, name, workspace_id, dataset_id, (Page(FIRST_PAGE, page_title, visuals),)
    )


def _reports() -> tuple[Report, ...]:
    sales_overview = Report(
        SALES_OVERVIEW_REPORT_ID,
        "Sales Overview",
        DEMO_WORKSPACE_ID,
        SALES_DATASET_ID,
        (
            Page(
                FIRST_PAGE,
                "Overview",
                (
                    _card("totalRevenue", "Total revenue", REVENUE, (0, 0, 3, 2)),
                    _card("unitsSold", "Units sold", UNITS, (3, 0, 3, 2)),
                    Visual(
                        "regionSlicer",
                        "Region",
                        "slicer",
                        (6, 0, 6, 2),
                        VisualQuery(distinct="Region"),
                    ),
                    _bar("revenueByRegion", "Revenue by region", "Region", (0, 2, 6, 6)),
                    _line("revenueByMonth", "Revenue by month", (6, 2, 6, 6)),
                ),
            ),
            Page(
                "ReportSection2",
                "Products",
                (
                    _table("productTable", "Sales by product", "Product", (0, 0, 7, 8)),
                    _bar("revenueByCategory", "Revenue by category", "Category", (7, 0, 5, 8)),
                ),
            ),
        ),
    )
    regional_performance = _one_page_report(
        REGIONAL_PERFORMANCE_REPORT_ID,
        "Regional Performance",
        DEMO_WORKSPACE_ID,
        REGIONAL_DATASET_ID,
        "My region",
        _card("regionRevenue", "Revenue", REVENUE, (0, 0, 3, 2)),
        _card("regionUnits", "Units sold", UNITS, (3, 0, 3, 2)),
        _bar("revenueByProduct", "Revenue by product", "Product", (0, 2, 6, 6)),
        _line("revenueByMonth", "Revenue by month", (6, 2, 6, 6)),
        _table("categoryTable", "Sales by category", "Category", (0, 8, 12, 4)),
    )
    operations_dashboard = _one_page_report(
        OPERATIONS_DASHBOARD_REPORT_ID,
        "Operations Dashboard",
        DEMO_WORKSPACE_ID,
        SALES_DATASET_ID,
        "Operations",
        _card("totalRevenue", "Total revenue", REVENUE, (0, 0, 4, 2)),
        _card("unitsSold", "Units sold", UNITS, (4, 0, 4, 2)),
        _card("orderLines", "Order lines", ORDER_LINES, (8, 0, 4, 2)),
        _line("revenueByMonth", "Revenue by month", (0, 2, 8, 7)),
        _bar("revenueByRegion", "Revenue by region", "Region", (8, 2, 4, 7)),
    )
    finance_summary = _one_page_report(
        FINANCE_SUMMARY_REPORT_ID,
        "Finance Summary",
        FINANCE_WORKSPACE_ID,
        FINANCE_DATASET_ID,
        "Summary",
        _card("totalRevenue", "Total revenue", REVENUE, (0, 0, 6, 2)),
        _card("orderLines", "Order lines", ORDER_LINES, (6, 0, 6, 2)),
        _bar("revenueByCategory", "Revenue by category", "Category", (0, 2, 5, 7)),
        _line("revenueByMonth", "Revenue by month", (5, 2, 7, 7)),
    )
    return (sales_overview, regional_performance, operations_dashboard, finance_summary)


@lru_cache(maxsize=1)
def demo_content() -> DemoContent:
    """The demo workspaces, datasets and reports (built once per process, then shared:
    immutable)."""
    workspace = Workspace(DEMO_WORKSPACE_ID, DEMO_WORKSPACE_NAME, "dedicated")
    finance = Workspace(FINANCE_WORKSPACE_ID, FINANCE_WORKSPACE_NAME, "fabric")
    sales = Dataset(SALES_DATASET_ID, "Sales", DEMO_WORKSPACE_ID)
    finance_sales = Dataset(FINANCE_DATASET_ID, "Finance Sales", FINANCE_WORKSPACE_ID)
    regional = Dataset(
        REGIONAL_DATASET_ID,
        "Regional Sales",
        DEMO_WORKSPACE_ID,
        roles=(RlsRole(REGION_MANAGER_ROLE, "Region", REGION_MANAGERS),),
        is_effective_identity_required=True,
        is_effective_identity_roles_required=True,
    )
    reports = _reports()
    return DemoContent(
        workspaces={workspace.id: workspace, finance.id: finance},
        datasets={sales.id: sales, regional.id: regional, finance_sales.id: finance_sales},
        reports={report.id: report for report in reports},
        table=sales_table(),
    )
