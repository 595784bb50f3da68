"""The SKUs a capacity can have, and what an hour of each is estimated to cost.

Why estimates: Microsoft's price depends on the region, the currency, the agreement and the day;
the portal cannot know the bill, only help an administrator see the order of magnitude and what
pausing saves. Every figure here is a pay-as-you-go list price in US dollars, and the admin can
replace it per capacity (``override``) with the price from their own Azure invoice.

Figures (checked 2026-12-01, all **estimates**):

- Fabric (F SKUs): $0.18 per capacity unit (CU) and hour, pay-as-you-go, US East, so F2 is
  $0.36/h and F64 $11.52/h. Third-party summaries of Microsoft's price list agree (F2 about
  $262 for a 730-hour month).
- Power BI Embedded (A SKUs): A1 about $1.0081/h pay-as-you-go, US East; each step doubles the
  v-cores and the price. Third-party summaries of Microsoft's list give A1 about $735 per
  730-hour month, which matches.
- Power BI Premium EM SKUs are not sold by the hour: they are Microsoft 365 subscriptions with a
  yearly commitment, billed monthly (Microsoft Learn, "What is Power BI Premium?"). No public
  hourly figure was found; the estimate given is that of the A SKU with the same v-cores (EM1 =
  A1, EM2 = A2, EM3 = A3, the pairing Microsoft's SKU table makes), and because the commitment
  is paid anyway, pausing one saves nothing (:attr:`Billing.COMMITMENT`).

The v-core and CU sizes come from Microsoft's SKU table (F8 = EM1/A1 = 1 v-core, …, F64 = P1/A4
= 8 v-cores; F2 and F4 have no v-core equivalent).
"""

from __future__ import annotations

import calendar
import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from embedportal.i18n import N_


class Provider(enum.StrEnum):
    """The Azure resource provider that manages capacities of a SKU family (the ARM path)."""

    POWER_BI_DEDICATED = "Microsoft.PowerBIDedicated"
    FABRIC = "Microsoft.Fabric"


class Billing(enum.StrEnum):
    """Whether pausing lowers the bill."""

    PAY_AS_YOU_GO = "pay_as_you_go"  # billed for the hours it runs; a paused capacity costs nothing
    COMMITMENT = "commitment"  # a subscription paid whether it runs or not


@dataclass(frozen=True)
class Sku:
    """One catalogue entry; ``capacity_units`` makes sizes comparable across families."""

    name: str
    provider: Provider
    billing: Billing
    capacity_units: int
    v_cores: int | None  # None: smaller than one v-core (F2, F4)
    estimated_hourly_usd: Decimal


FABRIC_USD_PER_CU_HOUR = Decimal("0.18")
A1_USD_PER_HOUR = Decimal("1.0081")
CENT = Decimal("0.01")
# Nobody pays this much per hour for one capacity (F2048 is about $369/h): a typo guard.
MAX_HOURLY_PRICE = Decimal("100000")


def _dedicated(prefix: str, *, billing: Billing, sizes: int) -> list[Sku]:
    """``<prefix>1`` … ``<prefix><sizes>``: 1, 2, 4, … v-cores, 8 CUs and one A1 price each
    (an EM SKU is priced as the A SKU of its size, see above)."""
    skus: list[Sku] = []
    for step in range(sizes):
        v_cores = 2**step
        skus.append(
            Sku(
                name=f"{prefix}{step + 1}",
                provider=Provider.POWER_BI_DEDICATED,
                billing=billing,
                capacity_units=8 * v_cores,
                v_cores=v_cores,
                estimated_hourly_usd=A1_USD_PER_HOUR * v_cores,
            )
        )
    return skus


def _catalogue() -> dict[str, Sku]:
    skus = _dedicated("A", billing=Billing.PAY_AS_YOU_GO, sizes=6)  # A1 … A6: 1, 2, 4, … 32 v-cores
    skus += _dedicated("EM", billing=Billing.COMMITMENT, sizes=3)  # EM1 … EM3 pair with A1 … A3
    for units in (2, 4, 8, 16, 32, 64):
        skus.append(
            Sku(
                name=f"F{units}",
                provider=Provider.FABRIC,
                billing=Billing.PAY_AS_YOU_GO,
                capacity_units=units,
                v_cores=units // 8 if units >= 8 else None,
                estimated_hourly_usd=FABRIC_USD_PER_CU_HOUR * units,
            )
        )
    return {sku.name: sku for sku in skus}


SKUS: dict[str, Sku] = _catalogue()


def normalise_sku_name(*, name: str) -> str:
    """``" f4 "`` → ``"F4"``: forms and ARM disagree on case and spacing, the catalogue does not."""
    return name.strip().upper()


def is_known_sku(*, name: str) -> bool:
    return normalise_sku_name(name=name) in SKUS


def sku_info(*, name: str) -> Sku:
    """The catalogue entry; KeyError for a SKU the portal does not know."""
    return SKUS[normalise_sku_name(name=name)]


def hourly_price(*, sku: str, override: Decimal | None = None) -> Decimal:
    """The price of one running hour: the administrator's own figure when set, else the
    catalogue's estimate."""
    if override is not None:
        if override < 0:
            raise ValueError("an hourly price cannot be negative")
        return override
    return sku_info(name=sku).estimated_hourly_usd


def cost_of_hours(*, sku: str, hours: Decimal, override: Decimal | None = None) -> Decimal:
    """What ``hours`` billed hours cost, rounded to the cent (billing granularity is the
    caller's business: pass whole hours, or seconds / 3600)."""
    if hours < 0:
        raise ValueError("billed hours cannot be negative")
    return (hourly_price(sku=sku, override=override) * hours).quantize(CENT, ROUND_HALF_UP)


def hours_in_month(*, year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1] * 24


@dataclass(frozen=True)
class MonthEstimate:
    """This month so far and where it is heading, next to what running all month would cost."""

    hourly_price: Decimal
    running_hours: Decimal  # billed so far this month
    elapsed_hours: Decimal  # hours of the month gone by
    month_hours: int
    cost_so_far: Decimal
    projected_cost: Decimal
    always_on_cost: Decimal
    projected_savings: Decimal  # always on minus projected; 0 under a commitment

    @property
    def savings_share(self) -> Decimal:
        """0 to 1: the share of the always-on bill that pausing is expected to save."""
        if self.always_on_cost == 0:
            return Decimal(0)
        return (self.projected_savings / self.always_on_cost).quantize(Decimal("0.0001"))


def month_estimate(
    *, sku: str, now: datetime, running_hours: Decimal, override: Decimal | None = None
) -> MonthEstimate:
    """The UTC calendar month containing ``now``: cost so far, and a projection that assumes
    the rest of the month runs the same share of the time as the part gone by.

    At the very start of a month nothing is known yet, so the projection assumes always-on:
    an estimate that errs high, never one that promises savings nobody has seen. Under a
    commitment (EM SKUs) the projection is the always-on figure whatever the running hours.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if running_hours < 0:
        raise ValueError("running hours cannot be negative")
    utc_now = now.astimezone(UTC)
    month_start = utc_now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    elapsed = Decimal((utc_now - month_start).total_seconds()) / 3600
    month_hours = hours_in_month(year=utc_now.year, month=utc_now.month)
    running = min(running_hours, elapsed)
    price = hourly_price(sku=sku, override=override)
    always_on = (price * month_hours).quantize(CENT, ROUND_HALF_UP)
    if sku_info(name=sku).billing is Billing.COMMITMENT:
        projected_hours = Decimal(month_hours)
    elif elapsed == 0:
        projected_hours = Decimal(month_hours)
    else:
        projected_hours = running + (running / elapsed) * (month_hours - elapsed)
    projected = (price * projected_hours).quantize(CENT, ROUND_HALF_UP)
    return MonthEstimate(
        hourly_price=price,
        running_hours=running,
        elapsed_hours=elapsed,
        month_hours=month_hours,
        cost_so_far=(price * running).quantize(CENT, ROUND_HALF_UP),
        projected_cost=projected,
        always_on_cost=always_on,
        projected_savings=max(always_on - projected, Decimal(0)),
    )


_PRICE = re.compile(r"^\d{1,6}(\.\d{1,4})?$", re.ASCII)


@dataclass(frozen=True)
class PriceFormResult:
    """``price`` None with ``error`` None: the field was left empty (use the estimate)."""

    price: Decimal | None
    error: str | None


def parse_hourly_price(*, text: str) -> PriceFormResult:
    """The admin's own hourly price from a form field: empty keeps the estimate; otherwise a
    non-negative amount with at most four decimals (a decimal comma is accepted)."""
    raw = text.strip()
    if "," in raw and "." not in raw:  # a decimal comma, as Portuguese writes it
        raw = raw.replace(",", ".")
    if not raw:
        return PriceFormResult(price=None, error=None)
    if not _PRICE.match(raw):
        return PriceFormResult(
            price=None,
            error=N_("Enter the price of one hour as a number, e.g. 1.0081, or leave it empty."),
        )
    try:
        price = Decimal(raw)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
        return PriceFormResult(price=None, error=N_("Enter the price of one hour as a number."))
    if price > MAX_HOURLY_PRICE:
        return PriceFormResult(
            price=None, error=N_("That hourly price is implausibly high; check the figure.")
        )
    return PriceFormResult(price=price, error=None)
