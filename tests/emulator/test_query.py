"""Properties of the pure query engine, checked with hypothesis against a naive model."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedportal.emulator.query import (
    OPERATORS,
    Column,
    Filter,
    GroupBy,
    Measure,
    Operator,
    QueryError,
    Table,
    VisualQuery,
    evaluate,
    parse_filter,
    parse_filters,
    visible_rows,
)

REGIONS = ["North", "South", "East"]
DAYS = ["2024-01-05", "2024-01-20", "2024-02-03", "2024-03-15", "2025-01-05"]
COLUMNS = (
    Column("Date", "date"),
    Column("Region", "text"),
    Column("Units", "integer"),
    Column("Revenue", "currency"),
)
REVENUE = Measure("Revenue", "sum", "Revenue", "currency")
UNITS = Measure("Units", "sum", "Units", "integer")
COUNT = Measure("Rows", "count", None, "integer")

rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(DAYS),
        st.sampled_from(REGIONS),
        st.integers(min_value=0, max_value=50),
        st.integers(min_value=0, max_value=100_000).map(lambda cents: cents / 100),
    ),
    max_size=40,
)
tables = rows_strategy.map(lambda rows: Table("Sales", COLUMNS, tuple(rows)))


@st.composite
def filters(draw: st.DrawFn) -> Filter:
    column = draw(st.sampled_from(["Date", "Region", "Units"]))
    pools: dict[str, list[Any]] = {"Date": DAYS, "Region": REGIONS, "Units": list(range(0, 51, 5))}
    pool = pools[column]
    operator: Operator = draw(st.sampled_from(OPERATORS))
    values = () if operator == "All" else tuple(draw(st.lists(st.sampled_from(pool), max_size=3)))
    return Filter("Sales", column, operator, values)


filter_lists = st.lists(filters(), max_size=4)
security_strategy = st.one_of(
    st.none(),
    st.lists(st.lists(filters(), min_size=1, max_size=2).map(tuple), max_size=3).map(tuple),
)
POSITION = {"Date": 0, "Region": 1, "Units": 2, "Revenue": 3}


def model_passes(row: tuple[Any, ...], item: Filter) -> bool:
    value = row[POSITION[item.column]]
    if item.operator == "All":
        return True
    return (value in item.values) == (item.operator == "In")


def model_visible(table: Table, chosen: list[Filter], security: Any) -> list[tuple[Any, ...]]:
    def allowed(row: tuple[Any, ...]) -> bool:
        if security is None:
            return True
        return any(all(model_passes(row, f) for f in role) for role in security)

    return [row for row in table.rows if allowed(row) and all(model_passes(row, f) for f in chosen)]


@given(tables, filter_lists, security_strategy)
def test_visible_rows_match_the_model(table: Table, chosen: list[Filter], security: Any) -> None:
    assert visible_rows(table, chosen, security) == model_visible(table, chosen, security)


@given(tables, filter_lists)
def test_filter_order_does_not_matter(table: Table, chosen: list[Filter]) -> None:
    assert visible_rows(table, chosen) == visible_rows(table, list(reversed(chosen)))


@given(tables, st.lists(st.sampled_from(REGIONS), max_size=3))
def test_in_and_not_in_partition_the_rows(table: Table, values: list[str]) -> None:
    inside = visible_rows(table, [Filter("Sales", "Region", "In", tuple(values))])
    outside = visible_rows(table, [Filter("Sales", "Region", "NotIn", tuple(values))])
    everything = visible_rows(table, [Filter("Sales", "Region", "All")])
    assert len(inside) + len(outside) == len(everything) == len(table.rows)
    assert not set(inside) & set(outside) or len(set(table.rows)) < len(table.rows)


@given(tables, filter_lists, security_strategy, st.sampled_from(["Region", "Date"]))
def test_groups_add_up_to_the_total(
    table: Table, chosen: list[Filter], security: Any, column: str
) -> None:
    total = evaluate(table, VisualQuery((REVENUE, UNITS, COUNT)), chosen, security)
    by_month = column == "Date"
    grouped = evaluate(
        table,
        VisualQuery((REVENUE, UNITS, COUNT), GroupBy(column, by_month=by_month, label="Key")),
        chosen,
        security,
    )
    [(revenue, units, count)] = total.rows
    if not grouped.rows:
        assert (revenue, units, count) == (None, None, None)
        return
    answer: list[tuple[Any, ...]] = list(grouped.rows)
    assert isinstance(revenue, float)
    assert math.isclose(sum(r[1] for r in answer), revenue, abs_tol=0.01 * len(answer))
    assert sum(r[2] for r in answer) == units
    assert sum(r[3] for r in answer) == count == len(visible_rows(table, chosen, security))
    keys = [r[0] for r in answer]
    assert keys == sorted(set(keys))
    if by_month:
        assert grouped.columns[0].type == "date"
        assert all(len(str(key)) == 7 and str(key)[4] == "-" for key in keys)


@given(tables, filter_lists)
def test_ordering_by_a_measure(table: Table, chosen: list[Filter]) -> None:
    query = VisualQuery((UNITS, REVENUE), GroupBy("Region"), order="measure_desc", order_measure=1)
    answer = evaluate(table, query, chosen)
    revenues = [float(row[2] or 0) for row in answer.rows]
    assert revenues == sorted(revenues, reverse=True)


@given(tables, filter_lists, security_strategy)
def test_a_slicer_ignores_its_own_selection(
    table: Table, chosen: list[Filter], security: Any
) -> None:
    answer = evaluate(table, VisualQuery(distinct="Region"), chosen, security)
    others = [item for item in chosen if item.column != "Region"]
    expected = sorted({row[1] for row in model_visible(table, others, security)})
    assert [row[0] for row in answer.rows] == expected


@given(tables, security_strategy)
def test_security_only_ever_hides_rows(table: Table, security: Any) -> None:
    secured = visible_rows(table, (), security)
    assert set(secured) <= set(table.rows)
    assert visible_rows(table, (), ()) == []
    # A role allowing every region is the same as no security at all.
    everyone = ((Filter("Sales", "Region", "In", tuple(REGIONS)),),)
    assert visible_rows(table, (), everyone) == list(table.rows)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
filter_like = st.fixed_dictionaries(
    {
        "target": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {
                    "table": st.sampled_from(["Sales", "Other", 1]),
                    "column": st.sampled_from(["Region", "Date", "Units", "Nope", None]),
                }
            ),
        ),
        "filterType": st.sampled_from([1, 0, 2, True, "1", None]),
        "operator": st.sampled_from(["In", "NotIn", "All", "Contains", None, 3]),
        "values": st.one_of(json_values, st.lists(json_values, max_size=4)),
    }
)


@settings(max_examples=300)
@given(st.one_of(json_values, st.lists(st.one_of(filter_like, json_values), max_size=3)))
def test_parsing_anything_gives_filters_or_a_query_error(raw: Any) -> None:
    table = Table("Sales", COLUMNS, ())
    try:
        parsed = parse_filters(raw, table)
    except QueryError:
        return
    assert all(isinstance(item, Filter) for item in parsed)
    evaluate(table, VisualQuery((REVENUE,)), parsed)


def test_parse_a_basic_filter() -> None:
    table = Table("Sales", COLUMNS, ())
    raw = {
        "$schema": "http://powerbi.com/product/schema#basic",
        "target": {"table": "Sales", "column": "Date"},
        "filterType": 1,
        "operator": "In",
        "values": ["2024-01-05T00:00:00.000Z"],
    }
    assert parse_filter(raw, table) == Filter("Sales", "Date", "In", ("2024-01-05",))
    units = {**raw, "target": {"table": "Sales", "column": "Units"}, "values": ["5", 6.0]}
    assert parse_filter(units, table).values == (5, 6.0)
    with pytest.raises(QueryError):
        parse_filter({**raw, "values": [True]}, table)
    with pytest.raises(QueryError):
        parse_filter({**raw, "values": [math.inf]}, table)


def test_measures_must_sum_numbers() -> None:
    table = Table("Sales", COLUMNS, (("2024-01-05", "North", 1, 2.0),))
    with pytest.raises(QueryError):
        evaluate(table, VisualQuery((Measure("Bad", "sum", "Region"),)))
    with pytest.raises(QueryError):
        evaluate(table, VisualQuery((REVENUE,), GroupBy("Region", by_month=True)))
    with pytest.raises(QueryError):
        evaluate(table, VisualQuery(distinct="Nope"))
