"""Translations: every word of the UI goes through gettext; catalogues are Babel .po files.

It sits below every layer (it imports nothing from embedportal), so services translate their
own messages. One convention: `_("...")` translates now, in the current request's language;
`N_("...")` only marks a message for extraction, for text defined at import time (form rules,
policy limits) that whoever shows it translates with `_(message)`.

The .po files are compiled in memory at start, so there is no build step and no compiled
file to forget. English is the source language.
"""

from __future__ import annotations

import gettext
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from io import BytesIO
from pathlib import Path

from babel.dates import format_date as _babel_date
from babel.dates import format_datetime as _babel_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal as _babel_decimal
from babel.support import Translations

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"
# Code → the language's own name, shown in the language picker.
LANGUAGES: dict[str, str] = {"en": "English", "pt_BR": "Português (Brasil)"}

_ENGLISH = gettext.NullTranslations()
_current: ContextVar[gettext.NullTranslations | None] = ContextVar(
    "embedportal_translations", default=None
)
_current_language: ContextVar[str] = ContextVar("embedportal_language", default="en")


def current_translations() -> gettext.NullTranslations:
    return _current.get() or _ENGLISH


@cache
def translations_for(language: str) -> gettext.NullTranslations:
    po_path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == "en" or not po_path.is_file():
        return gettext.NullTranslations()
    with po_path.open("rb") as po_file:
        catalog = read_po(po_file, locale=language)
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(fp=buffer, domain=DOMAIN)


def negotiate(accept_language: str | None, default: str) -> str:
    """The best supported language for an Accept-Language header (q-values honoured)."""
    if not accept_language:
        return default
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag:
            weighted.append((-quality, position, tag.strip()))
    for negative_quality, _, tag in sorted(weighted):
        if negative_quality >= 0:
            continue
        match = match_language(tag)
        if match:
            return match
    return default


def match_language(tag: str) -> str | None:
    normalised = tag.replace("-", "_").lower()
    for code in LANGUAGES:
        if normalised == code.lower():
            return code
    primary = normalised.split("_")[0]
    for code in LANGUAGES:
        if code.lower().split("_")[0] == primary:
            return code
    return None


@dataclass(frozen=True)
class Activation:
    translations: Token[gettext.NullTranslations | None]
    language: Token[str]


def activate(language: str) -> Activation:
    """Speak ``language`` in this context from now on; ``deactivate`` with the result undoes it."""
    return Activation(
        _current.set(translations_for(language)),
        _current_language.set(language if language in LANGUAGES else "en"),
    )


def deactivate(token: Activation) -> None:
    _current.reset(token.translations)
    _current_language.reset(token.language)


def current_language() -> str:
    return _current_language.get()


# --- numbers and dates as the reader writes them (Babel's CLDR data) ---------------------------


def format_number(value: float | int, places: int = 0) -> str:
    """``value`` with ``places`` decimals and the reader's separators: 1,234.5 or 1.234,5."""
    pattern = "#,##0" + ("." + "0" * places if places > 0 else "")
    return str(_babel_decimal(value, format=pattern, locale=current_language()))


def format_datetime(value: datetime) -> str:
    """A moment as the reader writes one, to the second: Dec 3, 2026, 6:11:17 AM, or
    3 de dez. de 2026 06:11:17."""
    return str(_babel_datetime(value, "medium", tzinfo=value.tzinfo, locale=current_language()))


def format_date(value: date) -> str:
    return str(_babel_date(value, "medium", locale=current_language()))


def gettext_(message: str, **variables: object) -> str:
    text = current_translations().gettext(message)
    return text % variables if variables else text


def ngettext_(singular: str, plural: str, n: int, **variables: object) -> str:
    text = current_translations().ngettext(singular, plural, n)
    return text % {"num": n, **variables}


def N_(message: str) -> str:  # noqa: N802 - the extractor's conventional name
    """Mark a message for translation without translating it here: whoever shows it
    translates it, in the reader's language."""
    return message


# Conventional short name, so `_("...")` is found by the message extractor.
_ = gettext_
