"""The demo content: deterministic, big enough, shaped as the portal and the iframe expect."""

from __future__ import annotations

import uuid

from embedportal.emulator import demo


def test_ids_are_uuid5_of_stable_names() -> None:
    for value, kind, name in (
        (demo.DEMO_WORKSPACE_ID, "workspace", "Demo workspace"),
        (demo.SALES_DATASET_ID, "dataset", "Sales"),
        (demo.REGIONAL_DATASET_ID, "dataset", "Regional Sales"),
        (demo.SALES_OVERVIEW_REPORT_ID, "report", "Sales Overview"),
        (demo.REGIONAL_PERFORMANCE_REPORT_ID, "report", "Regional Performance"),
        (demo.OPERATIONS_DASHBOARD_REPORT_ID, "report", "Operations Dashboard"),
    ):
        assert uuid.UUID(value).version == 5
        assert value == demo.stable_id(kind, name)
    # Pinned: other code and people's bookmarks rely on these never changing.
    assert demo.DEMO_WORKSPACE_ID == "69f1a485-be04-55cf-9ca8-48f1a60fd4f7"
    assert demo.SALES_OVERVIEW_REPORT_ID == "b8af28da-ef06-5ee8-9c1f-9d96843c446b"


def test_sales_rows_are_deterministic_and_plentiful() -> None:
    table = demo.sales_table()
    assert [column.name for column in table.columns] == [
        "Date",
        "Region",
        "Product",
        "Category",
        "Units",
        "Revenue",
    ]
    assert len(table.rows) >= 20_000
    demo.sales_table.cache_clear()
    again = demo.sales_table()
    assert again.rows == table.rows
    assert {row[1] for row in table.rows} == set(demo.REGIONS)
    assert len({row[2] for row in table.rows}) == 12
    assert min(row[0] for row in table.rows) == "2024-01-01"
    assert max(row[0] for row in table.rows) == "2025-12-31"
    assert all(int(row[4]) >= 1 and float(row[5]) > 0 for row in table.rows)


def test_reports_and_datasets() -> None:
    content = demo.demo_content()
    reports = {report.name: report for report in content.reports.values()}
    overview = reports["Sales Overview"]
    assert [page.display_name for page in overview.pages] == ["Overview", "Products"]
    first = {visual.title: visual.type for visual in overview.pages[0].visuals}
    assert first == {
        "Total revenue": "card",
        "Units sold": "card",
        "Region": "slicer",
        "Revenue by region": "bar",
        "Revenue by month": "line",
    }
    assert sorted(v.type for v in overview.pages[1].visuals) == ["bar", "table"]
    assert content.datasets[overview.dataset_id].name == "Sales"

    regional = reports["Regional Performance"]
    dataset = content.datasets[regional.dataset_id]
    assert dataset.name == "Regional Sales"
    assert dataset.is_effective_identity_required and dataset.is_effective_identity_roles_required
    assert [role.name for role in dataset.roles] == ["Region Manager"]
    assert {v.type for v in regional.pages[0].visuals} >= {"card", "bar", "line", "table"}

    operations = reports["Operations Dashboard"]
    assert content.datasets[operations.dataset_id].name == "Sales"
    assert len(operations.pages) == 1
    for report in content.reports.values():
        for page in report.pages:
            names = [visual.name for visual in page.visuals]
            assert len(names) == len(set(names))


def test_region_managers() -> None:
    dataset = demo.demo_content().datasets[demo.REGIONAL_DATASET_ID]
    assert demo.REGION_MANAGERS["north@example.com"] == "North"
    assert len(demo.REGION_MANAGERS) == len(demo.REGIONS)
    security = dataset.security("south@example.com", ("Region Manager",))
    assert security is not None
    [[only]] = security
    assert only.column == "Region" and only.values == ("South",)
    [[nobody]] = dataset.security("mallory@example.com", ("Region Manager",)) or ()
    assert nobody.values == ()
    sales = demo.demo_content().datasets[demo.SALES_DATASET_ID]
    assert sales.security(None, ()) is None


def test_the_second_workspace_has_its_own_report_and_capacity() -> None:
    content = demo.demo_content()
    for value, kind, name in (
        (demo.FINANCE_WORKSPACE_ID, "workspace", "Finance workspace"),
        (demo.FINANCE_DATASET_ID, "dataset", "Finance Sales"),
        (demo.FINANCE_SUMMARY_REPORT_ID, "report", "Finance Summary"),
    ):
        assert value == demo.stable_id(kind, name)
    assert demo.FINANCE_WORKSPACE_ID == "899d0fb0-a1d9-506a-9d4a-6582441cf42d"
    assert demo.FINANCE_SUMMARY_REPORT_ID == "e1d326c4-91a0-5aad-b2bb-d99160dfaf74"
    assert {w.name: w.capacity for w in content.workspaces.values()} == {
        "Demo workspace": "dedicated",
        "Finance workspace": "fabric",
    }
    [summary] = content.reports_in(demo.FINANCE_WORKSPACE_ID)
    assert summary.name == "Finance Summary"
    assert [d.id for d in content.datasets_in(demo.FINANCE_WORKSPACE_ID)] == [summary.dataset_id]
    assert len(content.reports_in(demo.DEMO_WORKSPACE_ID)) == 3
