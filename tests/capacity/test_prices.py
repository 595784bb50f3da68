"""The SKU catalogue and its estimated prices: pure arithmetic, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from embedportal.capacity.prices import (
    SKUS,
    Billing,
    Provider,
    cost_of_hours,
    hourly_price,
    hours_in_month,
    is_known_sku,
    month_estimate,
    parse_hourly_price,
    sku_info,
)

EXPECTED_HOURLY = {
    "A1": "1.0081",
    "A2": "2.0162",
    "A3": "4.0324",
    "A4": "8.0648",
    "A5": "16.1296",
    "A6": "32.2592",
    "EM1": "1.0081",
    "EM2": "2.0162",
    "EM3": "4.0324",
    "F2": "0.36",
    "F4": "0.72",
    "F8": "1.44",
    "F16": "2.88",
    "F32": "5.76",
    "F64": "11.52",
}


def test_the_catalogue_holds_exactly_the_issue_s_skus() -> None:
    assert set(SKUS) == set(EXPECTED_HOURLY)


@pytest.mark.parametrize(("name", "price"), sorted(EXPECTED_HOURLY.items()))
def test_estimated_hourly_prices(name: str, price: str) -> None:
    assert sku_info(name=name).estimated_hourly_usd == Decimal(price)
    assert hourly_price(sku=name) == Decimal(price)


@pytest.mark.parametrize(
    ("name", "provider", "billing", "units", "v_cores"),
    [
        ("A1", Provider.POWER_BI_DEDICATED, Billing.PAY_AS_YOU_GO, 8, 1),
        ("A4", Provider.POWER_BI_DEDICATED, Billing.PAY_AS_YOU_GO, 64, 8),
        ("A6", Provider.POWER_BI_DEDICATED, Billing.PAY_AS_YOU_GO, 256, 32),
        ("EM1", Provider.POWER_BI_DEDICATED, Billing.COMMITMENT, 8, 1),
        ("EM3", Provider.POWER_BI_DEDICATED, Billing.COMMITMENT, 32, 4),
        ("F2", Provider.FABRIC, Billing.PAY_AS_YOU_GO, 2, None),
        ("F4", Provider.FABRIC, Billing.PAY_AS_YOU_GO, 4, None),
        ("F8", Provider.FABRIC, Billing.PAY_AS_YOU_GO, 8, 1),
        ("F64", Provider.FABRIC, Billing.PAY_AS_YOU_GO, 64, 8),
    ],
)
def test_families_and_sizes(
    name: str, provider: Provider, billing: Billing, units: int, v_cores: int | None
) -> None:
    sku = sku_info(name=name)
    assert (sku.provider, sku.billing, sku.capacity_units, sku.v_cores) == (
        provider,
        billing,
        units,
        v_cores,
    )


def test_same_size_same_estimate_across_families() -> None:
    """A1, EM1 and F8 are the same 8 CUs; their estimates are within a few percent."""
    a1, em1, f8 = (sku_info(name=n).estimated_hourly_usd for n in ("A1", "EM1", "F8"))
    assert a1 == em1
    assert abs(a1 - f8) / f8 < Decimal("0.35")


@pytest.mark.parametrize(
    ("name", "known"),
    [
        ("A1", True),
        ("a1", True),
        (" f64 ", True),
        ("Em2", True),
        ("A7", False),
        ("F128", False),
        ("P1", False),
        ("", False),
        ("F 2", False),
    ],
)
def test_is_known_sku(name: str, known: bool) -> None:
    assert is_known_sku(name=name) is known


def test_unknown_sku_has_no_price() -> None:
    with pytest.raises(KeyError):
        hourly_price(sku="P1")


def test_override_wins_and_must_not_be_negative() -> None:
    assert hourly_price(sku="F2", override=Decimal("0.50")) == Decimal("0.50")
    assert hourly_price(sku="F2", override=Decimal(0)) == Decimal(0)
    with pytest.raises(ValueError):
        hourly_price(sku="F2", override=Decimal("-1"))


@pytest.mark.parametrize(
    ("sku", "hours", "override", "cost"),
    [
        ("F2", "0", None, "0.00"),
        ("F2", "1", None, "0.36"),
        ("F2", "730", None, "262.80"),
        ("A1", "730", None, "735.91"),  # 735.913
        ("F64", "24", None, "276.48"),
        ("A1", "0.5", None, "0.50"),  # 0.50405, half up
        ("A1", "10", "2", "20.00"),
    ],
)
def test_cost_of_hours(sku: str, hours: str, override: str | None, cost: str) -> None:
    price = Decimal(override) if override is not None else None
    assert cost_of_hours(sku=sku, hours=Decimal(hours), override=price) == Decimal(cost)


def test_cost_of_negative_hours_is_an_error() -> None:
    with pytest.raises(ValueError):
        cost_of_hours(sku="F2", hours=Decimal("-0.1"))


@pytest.mark.parametrize(
    ("year", "month", "hours"),
    [(2026, 2, 672), (2028, 2, 696), (2026, 1, 744), (2026, 4, 720), (2026, 12, 744)],
)
def test_hours_in_month(year: int, month: int, hours: int) -> None:
    assert hours_in_month(year=year, month=month) == hours


def test_month_estimate_projects_the_share_of_time_running() -> None:
    # April (720 h): 10 days (240 h) gone, the capacity ran 60 h of them (a quarter).
    now = datetime(2026, 4, 11, 0, 0, tzinfo=UTC)
    estimate = month_estimate(sku="F2", now=now, running_hours=Decimal(60))
    assert estimate.month_hours == 720
    assert estimate.elapsed_hours == Decimal(240)
    assert estimate.cost_so_far == Decimal("21.60")
    assert estimate.always_on_cost == Decimal("259.20")
    assert estimate.projected_cost == Decimal("64.80")  # a quarter of always-on
    assert estimate.projected_savings == Decimal("194.40")
    assert estimate.savings_share == Decimal("0.7500")


def test_month_estimate_uses_the_utc_month() -> None:
    # 23:30 on 30 April in São Paulo is already May in UTC.
    now = datetime(2026, 4, 30, 23, 30, tzinfo=timezone(timedelta(hours=-3)))
    estimate = month_estimate(sku="F2", now=now, running_hours=Decimal(0))
    assert estimate.month_hours == 744  # May
    assert estimate.elapsed_hours == Decimal("2.5")


def test_month_estimate_at_the_first_instant_assumes_always_on() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    estimate = month_estimate(sku="F2", now=now, running_hours=Decimal(0))
    assert estimate.projected_cost == estimate.always_on_cost
    assert estimate.projected_savings == 0
    assert estimate.savings_share == 0


def test_month_estimate_caps_running_hours_at_elapsed_time() -> None:
    now = datetime(2026, 4, 2, tzinfo=UTC)  # 24 h gone
    estimate = month_estimate(sku="F2", now=now, running_hours=Decimal(50))
    assert estimate.running_hours == Decimal(24)
    assert estimate.projected_cost == estimate.always_on_cost


def test_month_estimate_under_a_commitment_saves_nothing() -> None:
    now = datetime(2026, 4, 11, tzinfo=UTC)
    estimate = month_estimate(sku="EM1", now=now, running_hours=Decimal(10))
    assert estimate.projected_cost == estimate.always_on_cost
    assert estimate.projected_savings == 0


def test_month_estimate_with_an_override_and_a_free_price() -> None:
    now = datetime(2026, 4, 11, tzinfo=UTC)
    free = month_estimate(sku="F2", now=now, running_hours=Decimal(1), override=Decimal(0))
    assert free.always_on_cost == 0
    assert free.savings_share == 0
    own = month_estimate(sku="F2", now=now, running_hours=Decimal(240), override=Decimal(1))
    assert own.always_on_cost == Decimal("720.00")
    assert own.projected_cost == Decimal("720.00")


def test_month_estimate_refuses_naive_times_and_negative_hours() -> None:
    with pytest.raises(ValueError):
        month_estimate(sku="F2", now=datetime(2026, 4, 1), running_hours=Decimal(0))
    with pytest.raises(ValueError):
        month_estimate(sku="F2", now=datetime(2026, 4, 1, tzinfo=UTC), running_hours=Decimal(-1))


@pytest.mark.parametrize(
    ("text", "price"),
    [
        ("", None),
        ("   ", None),
        ("1.0081", "1.0081"),
        (" 12 ", "12"),
        ("0", "0"),
        ("0,36", "0.36"),  # a decimal comma
        ("100000", "100000"),
    ],
)
def test_parse_hourly_price_accepts(text: str, price: str | None) -> None:
    result = parse_hourly_price(text=text)
    assert result.error is None
    assert result.price == (Decimal(price) if price is not None else None)


@pytest.mark.parametrize(
    "text", ["-1", "abc", "1.23456", "1,000.50", "1e3", "NaN", "Infinity", "1.2.3", "100001", "１"]
)
def test_parse_hourly_price_refuses(text: str) -> None:
    result = parse_hourly_price(text=text)
    assert result.price is None
    assert result.error
