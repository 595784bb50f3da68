"""Filters a report opens with: a view option, never a security boundary.

An application that signs a user in through a single sign-on link may ask for the report to open
filtered (one region, one customer). They travel in the viewer's address as `?filters=` (compact
JSON) and reach Power BI as basic filters in the embed configuration. The reader can change them
as any filter, so what a user must not see is kept from them by row-level security, not here.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from embedportal.i18n import _

MAX_FILTERS = 10
MAX_VALUES = 100
# A whole filter list stays inside what the portal takes as one value of an address
# (web/input_guard.py), and well inside what browsers and proxies take.
MAX_PARAM_LENGTH = 2000

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Value = (
    Annotated[str, StringConstraints(max_length=200)]
    | int
    | Annotated[float, Field(allow_inf_nan=False)]
    | bool
)


class ReportFilter(BaseModel):
    """One basic filter: the rows whose `column` of `table` is (or is not) one of `values`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Name = Field(examples=["Sales"])
    column: Name = Field(examples=["Region"])
    operator: Literal["In", "NotIn"] = Field(
        "In", description="Keep the values, or leave them out."
    )
    values: list[Value] = Field(min_length=1, max_length=MAX_VALUES, examples=[["North"]])


FilterList = Annotated[list[ReportFilter], Field(max_length=MAX_FILTERS)]
_FILTER_LIST: TypeAdapter[list[ReportFilter]] = TypeAdapter(FilterList)


class FilterParamError(ValueError):
    """A `?filters=` that is not a list of filters; the message says what is wrong."""


def filters_param(filters: list[ReportFilter]) -> str:
    """The compact JSON that `parse_filters_param` reads back."""
    return json.dumps(
        [item.model_dump(mode="json") for item in filters],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def parse_filters_param(text: str) -> list[ReportFilter]:
    if len(text) > MAX_PARAM_LENGTH:
        raise FilterParamError(
            _("The filters are longer than %(limit)s characters.", limit=MAX_PARAM_LENGTH)
        )
    try:
        return _FILTER_LIST.validate_json(text)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        reason = f"{where}: {first['msg']}" if where else first["msg"]
        raise FilterParamError(
            _("The filters are not valid (%(reason)s).", reason=reason)
        ) from None


def embed_filters(filters: list[ReportFilter]) -> list[dict[str, object]]:
    """The filters as powerbi-models basic filters, for the embed configuration."""
    return [
        {
            "$schema": "http://powerbi.com/product/schema#basic",
            "target": {"table": item.table, "column": item.column},
            "filterType": 1,
            "operator": item.operator,
            "values": list(item.values),
            "requireSingleSelection": False,
        }
        for item in filters
    ]
