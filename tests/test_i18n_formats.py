"""Numbers and moments as the reader writes them (Babel's CLDR data), in the templates too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from embedportal import i18n
from embedportal.web.templating import create_templates


@pytest.fixture
def speaking(request: pytest.FixtureRequest) -> Iterator[str]:
    language: str = request.param
    token = i18n.activate(language)
    yield language
    i18n.deactivate(token)


@pytest.mark.parametrize(
    ("speaking", "written"),
    [
        ("en", ["0.2", "1,234.50", "1,235", "0.4000"]),
        ("pt_BR", ["0,2", "1.234,50", "1.235", "0,4000"]),
    ],
    indirect=["speaking"],
)
def test_numbers_take_the_readers_separators(speaking: str, written: list[str]) -> None:
    assert [
        i18n.format_number(0.2, 1),
        i18n.format_number(1234.5, 2),
        i18n.format_number(1234.6),
        i18n.format_number(0.4, 4),
    ] == written


@pytest.mark.parametrize(
    ("speaking", "moment", "day"),
    [
        ("en", "Dec 3, 2026, 2:05:09\u202fPM", "Dec 3, 2026"),
        ("pt_BR", "3 de dez. de 2026 14:05:09", "3 de dez. de 2026"),
    ],
    indirect=["speaking"],
)
def test_moments_and_days_read_as_the_reader_writes_them(
    speaking: str, moment: str, day: str
) -> None:
    at = datetime(2026, 12, 3, 14, 5, 9, tzinfo=ZoneInfo("Europe/Lisbon"))
    assert i18n.format_datetime(at) == moment
    assert i18n.format_date(date(2026, 12, 3)) == day


def test_the_language_is_the_one_activated_and_restored_after() -> None:
    assert i18n.current_language() == "en"
    token = i18n.activate("pt_BR")
    assert i18n.current_language() == "pt_BR"
    i18n.deactivate(token)
    assert i18n.current_language() == "en"
    unknown = i18n.activate("xx")
    assert i18n.current_language() == "en"
    i18n.deactivate(unknown)


@pytest.mark.parametrize("speaking", ["pt_BR"], indirect=True)
def test_templates_format_through_the_same_filters(speaking: str) -> None:
    env = create_templates().env
    rendered = env.from_string(
        "{{ 0.25 | number(1) }} {{ 1234 | number }} {{ at | moment }}"
    ).render(at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=ZoneInfo("UTC")))
    assert rendered == "0,2 1.234 2 de jan. de 2026 03:04:05"
