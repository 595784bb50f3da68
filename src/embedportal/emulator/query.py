"""The emulator's query engine: filter, secure, group and aggregate one table. Pure: no I/O.

A visual asks one question of one table: "these measures, grouped by this column (or by month
of a date column), over the rows these filters and this row-level security let through".
Filters follow powerbi-models' BasicFilter (`In`, `NotIn`, `All` on one column); row-level
security is a union of roles, each a conjunction of filters, as Power BI combines roles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

Cell: TypeAlias = str | int | float
ColumnKind = Literal["text", "date", "integer", "currency"]
Operator = Literal["In", "NotIn", "All"]
Aggregate = Literal["sum", "count"]

BASIC_FILTER_TYPE = 1  # powerbi-models FilterType.Basic
OPERATORS: tuple[Operator, ...] = ("In", "NotIn", "All")


class QueryError(ValueError):
    """The question cannot be asked of this table (bad filter, unknown column…)."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: ColumnKind


@dataclass(frozen=True, slots=True)
class Table:
    """Rows of cells in the order of `columns`. A date cell is an ISO `YYYY-MM-DD` string."""

    name: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]

    def index(self, column: str) -> int:
        for position, candidate in enumerate(self.columns):
            if candidate.name == column:
                return position
        raise QueryError(f"Table '{self.name}' has no column '{column}'")

    def column(self, column: str) -> Column:
        return self.columns[self.index(column)]


@dataclass(frozen=True, slots=True)
class Filter:
    table: str
    column: str
    operator: Operator
    values: tuple[Cell, ...] = ()


# None: every row. Otherwise a row is visible when it passes all filters of at least one role;
# an empty tuple therefore hides every row (an identity no role lets see anything).
Security: TypeAlias = tuple[tuple[Filter, ...], ...] | None


@dataclass(frozen=True, slots=True)
class Measure:
    name: str
    aggregate: Aggregate
    column: str | None = None  # summed column; None for count
    kind: ColumnKind = "currency"
    format: str | None = None


@dataclass(frozen=True, slots=True)
class GroupBy:
    column: str
    by_month: bool = False  # group a date column by `YYYY-MM`
    label: str | None = None  # the answer's column name (default: the column's)

    @property
    def name(self) -> str:
        return self.label or self.column


@dataclass(frozen=True, slots=True)
class VisualQuery:
    """What a visual shows. `distinct` is a slicer's column: its distinct values, sorted."""

    measures: tuple[Measure, ...] = ()
    group_by: GroupBy | None = None
    order: Literal["group", "measure_desc"] = "group"
    order_measure: int = 0  # with "measure_desc": which measure sorts the rows
    distinct: str | None = None


@dataclass(frozen=True, slots=True)
class ResultColumn:
    name: str
    type: ColumnKind
    format: str | None = None

    def as_json(self) -> dict[str, str]:
        answer = {"name": self.name, "type": self.type}
        if self.format is not None:
            answer["format"] = self.format
        return answer


@dataclass(frozen=True, slots=True)
class Result:
    columns: tuple[ResultColumn, ...]
    rows: tuple[tuple[Cell | None, ...], ...] = field(default=())

    def as_json(self) -> dict[str, object]:
        return {
            "columns": [column.as_json() for column in self.columns],
            "rows": [list(row) for row in self.rows],
        }


# --- parsing the filters a client sends ----------------------------------------------------------


def _is_cell(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (str, int))


def parse_filter(raw: object, table: Table) -> Filter:
    """A powerbi-models BasicFilter (a decoded JSON object), checked against `table`."""
    if not isinstance(raw, Mapping):
        raise QueryError("A filter must be a JSON object")
    if raw.get("filterType") != BASIC_FILTER_TYPE or isinstance(raw.get("filterType"), bool):
        raise QueryError("Only basic filters (filterType 1) are supported")
    target = raw.get("target")
    if not isinstance(target, Mapping):
        raise QueryError("A filter needs a target {table, column}")
    table_name, column_name = target.get("table"), target.get("column")
    if not isinstance(table_name, str) or not isinstance(column_name, str):
        raise QueryError("A filter's target needs string 'table' and 'column'")
    if table_name != table.name:
        raise QueryError(f"Unknown table '{table_name}'")
    column = table.column(column_name)
    operator = raw.get("operator")
    if operator not in OPERATORS:
        raise QueryError(f"Unsupported filter operator {operator!r}; use In, NotIn or All")
    values = raw.get("values", [])
    if not isinstance(values, list):
        raise QueryError("A filter's 'values' must be a list")
    if len(values) > 10_000:
        raise QueryError("A filter may hold at most 10000 values")
    cells: list[Cell] = []
    for value in values:
        if not _is_cell(value):
            raise QueryError(f"Unsupported filter value {value!r}")
        cells.append(_normalise(value, column.kind))
    return Filter(table_name, column_name, operator, tuple(cells))


def parse_filters(raw: object, table: Table) -> tuple[Filter, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise QueryError("'filters' must be a list")
    if len(raw) > 100:
        raise QueryError("At most 100 filters are allowed")
    return tuple(parse_filter(item, table) for item in raw)


def _normalise(value: Cell, kind: ColumnKind) -> Cell:
    """Make a filter value comparable with the column's cells."""
    if kind == "date" and isinstance(value, str):
        return value[:10]  # "2024-01-31T00:00:00.000Z" names the day 2024-01-31
    if kind == "text" and not isinstance(value, str):
        return str(value)
    if kind in ("integer", "currency") and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value  # matches nothing
        return int(number) if number.is_integer() else number
    return value


# --- evaluation ----------------------------------------------------------------------------------


def _predicate(table: Table, filters: Sequence[Filter]) -> list[tuple[int, bool, frozenset[Cell]]]:
    """(column index, keep-if-member, member set) for each filter that restricts rows."""
    checks: list[tuple[int, bool, frozenset[Cell]]] = []
    for item in filters:
        if item.table != table.name:
            raise QueryError(f"Unknown table '{item.table}'")
        position = table.index(item.column)
        if item.operator == "All":
            continue
        checks.append((position, item.operator == "In", frozenset(item.values)))
    return checks


def _passes(row: tuple[Cell, ...], checks: list[tuple[int, bool, frozenset[Cell]]]) -> bool:
    return all((row[position] in members) is keep for position, keep, members in checks)


def visible_rows(
    table: Table, filters: Sequence[Filter] = (), security: Security = None
) -> list[tuple[Cell, ...]]:
    """The rows that the security lets this identity see and that pass every filter."""
    checks = _predicate(table, filters)
    role_checks = None if security is None else [_predicate(table, role) for role in security]
    visible: list[tuple[Cell, ...]] = []
    for row in table.rows:
        if role_checks is not None and not any(_passes(row, role) for role in role_checks):
            continue
        if _passes(row, checks):
            visible.append(row)
    return visible


def _aggregate(measure: Measure, table: Table, rows: Sequence[tuple[Cell, ...]]) -> Cell | None:
    """A measure over rows; None (DAX's BLANK) over no rows."""
    if not rows:
        return None
    if measure.aggregate == "count":
        return len(rows)
    if measure.column is None:
        raise QueryError(f"Measure '{measure.name}' needs a column to sum")
    position = table.index(measure.column)
    total = math.fsum(float(row[position]) for row in rows)
    if measure.kind == "integer":
        return int(round(total))
    return round(total, 2)


def _group_key(row: tuple[Cell, ...], position: int, by_month: bool) -> Cell:
    value = row[position]
    return str(value)[:7] if by_month else value


def evaluate(
    table: Table,
    query: VisualQuery,
    filters: Sequence[Filter] = (),
    security: Security = None,
) -> Result:
    """Answer a visual's question. Rows of a grouped answer come sorted by group (months and
    names ascending) or by one measure, largest first, then by group."""
    if query.distinct is not None:
        column = table.column(query.distinct)
        # A slicer lists every value the other filters leave, whatever is selected in it.
        others = [item for item in filters if item.column != query.distinct]
        position = table.index(query.distinct)
        seen = {row[position] for row in visible_rows(table, others, security)}
        distinct = sorted(seen, key=_key)
        return Result((ResultColumn(column.name, column.kind),), tuple((v,) for v in distinct))

    for measure in query.measures:
        if measure.column is not None and table.column(measure.column).kind not in (
            "integer",
            "currency",
        ):
            raise QueryError(f"Column '{measure.column}' is not a number")
    measure_columns = tuple(
        ResultColumn(measure.name, measure.kind, measure.format) for measure in query.measures
    )
    rows = visible_rows(table, filters, security)
    if query.group_by is None:
        totals = tuple(_aggregate(measure, table, rows) for measure in query.measures)
        return Result(measure_columns, (totals,))

    group = query.group_by
    position = table.index(group.column)
    source = table.columns[position]
    if group.by_month and source.kind != "date":
        raise QueryError(f"Column '{group.column}' is not a date")
    groups: dict[Cell, list[tuple[Cell, ...]]] = {}
    for row in rows:
        groups.setdefault(_group_key(row, position, group.by_month), []).append(row)
    answer: list[tuple[Cell, tuple[Cell | None, ...]]] = [
        (key, tuple(_aggregate(measure, table, members) for measure in query.measures))
        for key, members in groups.items()
    ]
    answer.sort(key=lambda item: _key(item[0]))
    if query.order == "measure_desc" and 0 <= query.order_measure < len(query.measures):
        sort_at = query.order_measure
        answer.sort(key=lambda item: -_number(item[1][sort_at]))
    group_column = ResultColumn(group.name, "date" if group.by_month else source.kind)
    return Result((group_column, *measure_columns), tuple((key, *totals) for key, totals in answer))


def _key(value: Cell) -> tuple[int, float, str]:
    """A total order over mixed cells: numbers before text."""
    if isinstance(value, (int, float)):
        return (0, float(value), "")
    return (1, 0.0, value)


def _number(value: Cell | None) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0
