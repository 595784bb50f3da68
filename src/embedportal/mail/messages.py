"""The portal's mails, composed in the recipient's language: a subject, plain text, and a simple
HTML alternative with the same words. Pure: no I/O beyond reading the translation catalogue."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from html import escape

from embedportal import i18n
from embedportal.i18n import _


@dataclass(frozen=True)
class MailBrand:
    """The organization as its mails show it: the name, and when branded, its colour (a checked
    #rrggbb) and the absolute URL of its logo."""

    name: str
    color: str = ""
    logo_url: str | None = None


@dataclass(frozen=True)
class ComposedMail:
    kind: str
    language: str
    subject: str
    text_body: str
    html_body: str


@contextmanager
def _speaking(language: str) -> Iterator[str]:
    chosen = language if language in i18n.LANGUAGES else "en"
    token = i18n.activate(chosen)
    try:
        yield chosen
    finally:
        i18n.deactivate(token)


def _banner(brand: MailBrand) -> str:
    """The organization's name (and logo) above the words, in its colour when it has one."""
    color = brand.color or "#1f2937"
    logo = (
        f'<img src="{escape(brand.logo_url, quote=True)}" alt="" height="32" '
        'style="height: 32px; vertical-align: middle; margin-right: 8px">'
        if brand.logo_url
        else ""
    )
    return (
        f'<div style="border-bottom: 3px solid {escape(color, quote=True)}; padding: 8px 0; '
        f'margin-bottom: 16px; font-weight: bold; color: {escape(color, quote=True)}">'
        f"{logo}{escape(brand.name)}</div>"
    )


def _compose(
    *,
    kind: str,
    language: str,
    subject: str,
    paragraphs: list[str],
    link: str | None,
    brand: MailBrand,
) -> ComposedMail:
    """Plain text with the link on a line of its own (mail programs make it clickable), and
    HTML that escapes everything it is given."""
    text_parts = list(paragraphs)
    if link is not None:
        text_parts.insert(len(paragraphs) - 1 if len(paragraphs) > 1 else 1, link)
    text_body = "\n\n".join(text_parts) + "\n"
    html_parts = [f"<p>{escape(paragraph)}</p>" for paragraph in paragraphs]
    if link is not None:
        anchor = f'<p><a href="{escape(link, quote=True)}">{escape(link)}</a></p>'
        html_parts.insert(len(paragraphs) - 1 if len(paragraphs) > 1 else 1, anchor)
    html_body = (
        f'<!DOCTYPE html><html lang="{escape(language.replace("_", "-"))}"><head>'
        f'<meta charset="utf-8"><title>{escape(subject)}</title></head>'
        f'<body style="font-family: sans-serif; line-height: 1.5">{_banner(brand)}'
        f"{''.join(html_parts)}"
        "</body></html>\n"
    )
    return ComposedMail(
        kind=kind, language=language, subject=subject, text_body=text_body, html_body=html_body
    )


def _greeting(name: str) -> str:
    return _("Hello %(name)s,", name=name) if name.strip() else _("Hello,")


def invitation(
    *, language: str, brand: MailBrand, name: str, email: str, link: str, hours: int
) -> ComposedMail:
    with _speaking(language) as chosen:
        return _compose(
            kind="invitation",
            language=chosen,
            subject=_("Your account at %(organization)s", organization=brand.name),
            paragraphs=[
                _greeting(name),
                _(
                    "An administrator of %(organization)s created an account for you "
                    "(%(email)s) to see its reports. Choose your password with this link:",
                    organization=brand.name,
                    email=email,
                ),
                _(
                    "The link works once, within %(hours)d hours. If it has expired, ask your "
                    "administrator for a new one.",
                    hours=hours,
                ),
            ],
            link=link,
            brand=brand,
        )


def password_reset(
    *, language: str, brand: MailBrand, name: str, link: str, minutes: int
) -> ComposedMail:
    with _speaking(language) as chosen:
        return _compose(
            kind="password_reset",
            language=chosen,
            subject=_("Set a new password for %(organization)s", organization=brand.name),
            paragraphs=[
                _greeting(name),
                _(
                    "Someone, probably you, asked to set a new password for your account at "
                    "%(organization)s. Choose it with this link:",
                    organization=brand.name,
                ),
                _(
                    "The link works once, within %(minutes)d minutes. If you did not ask for "
                    "it, ignore this mail: your password stays as it is.",
                    minutes=minutes,
                ),
            ],
            link=link,
            brand=brand,
        )


def credential_changed(
    *, language: str, brand: MailBrand, name: str, what: str, when: datetime
) -> ComposedMail:
    """``what`` is an English sentence marked with N_ (access/credential_notices.py): it is
    translated here, in the recipient's language."""
    with _speaking(language) as chosen:
        return _compose(
            kind="credential_changed",
            language=chosen,
            subject=_("Your sign-in details at %(organization)s changed", organization=brand.name),
            paragraphs=[
                _greeting(name),
                _(what),
                _("When: %(when)s.", when=f"{i18n.format_datetime(when)} ({when.tzname()})"),
                _(
                    "If this was not you or someone you asked, tell your administrator at "
                    "once: someone else may know your password."
                ),
            ],
            link=None,
            brand=brand,
        )
