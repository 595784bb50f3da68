"""Telling a user that their sign-in details changed (OWASP ASVS 2.2.3): one mail per change,
written to the outbox in the transaction that makes the change.

Every way a password changes calls `notify_credential_changed`; so does any other change of
how one signs in (two-step sign-in turned on or off), with its own sentence."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from embedportal.access.audit_log import organization_zone
from embedportal.access.branding import LOGO, brand_of
from embedportal.db.base import utcnow
from embedportal.db.models import OutboxMail, User
from embedportal.i18n import N_
from embedportal.mail import messages
from embedportal.mail.outbox import enqueue

# What changed, as the mail says it: English marked for translation, translated into the
# recipient's language when the mail is composed.
PASSWORD_CHANGED_BY_USER = N_("Your password was changed on your account page.")
PASSWORD_SET_BY_ADMIN = N_("An administrator set a new password for your account.")
PASSWORD_SET_FROM_CLI = N_(
    "A new password was set for your account with the portal's command line."
)
PASSWORD_RESET = N_("Your password was changed with a reset link sent to this address.")


def mail_brand(*, session: Session, base_url: str | None = None) -> messages.MailBrand:
    """The organization as its mails show it; the logo only where the portal's address is known
    (a mail needs an absolute URL)."""
    brand = brand_of(session=session)
    logo = brand.image_url(LOGO)
    return messages.MailBrand(
        name=brand.name,
        color=brand.color,
        logo_url=base_url.rstrip("/") + logo if base_url and logo else None,
    )


def mail_language(user: User, *, default: str) -> str:
    """The user's own choice (Account page), else the portal's default language."""
    return user.language or default


def notify_credential_changed(
    *,
    session: Session,
    user: User,
    what: str,
    default_language: str = "en",
    base_url: str | None = None,
    now: datetime | None = None,
) -> OutboxMail:
    """Queue the notice "``what``, at this time" to ``user``. ``what`` is one of the sentences
    above, or another marked with N_."""
    when = (now or utcnow()).astimezone(organization_zone(session=session))
    mail = messages.credential_changed(
        language=mail_language(user, default=default_language),
        brand=mail_brand(session=session, base_url=base_url),
        name=user.name,
        what=what,
        when=when,
    )
    return enqueue(session=session, recipient=user.email, mail=mail)
