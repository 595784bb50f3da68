"""Telling a user that their sign-in details changed (OWASP ASVS 2.2.3): one mail per change,
written to the outbox in the transaction that makes the change.

Every way a password changes calls `notify_credential_changed`; so does any other change of
how one signs in (two-step sign-in turned on or off), with its own sentence."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from embedportal.access.audit_log import organization_zone
from embedportal.db.base import utcnow
from embedportal.db.models import Organization, OutboxMail, User
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


def organization_name(*, session: Session) -> str:
    organization = session.get(Organization, 1)
    return organization.name if organization is not None else "embedportal"


def mail_language(user: User, *, default: str) -> str:
    """The user's own choice (Account page), else the portal's default language."""
    return user.language or default


def notify_credential_changed(
    *,
    session: Session,
    user: User,
    what: str,
    default_language: str = "en",
    now: datetime | None = None,
) -> OutboxMail:
    """Queue the notice "``what``, at this time" to ``user``. ``what`` is one of the sentences
    above, or another marked with N_."""
    when = (now or utcnow()).astimezone(organization_zone(session=session))
    mail = messages.credential_changed(
        language=mail_language(user, default=default_language),
        organization=organization_name(session=session),
        name=user.name,
        what=what,
        when=when.strftime("%Y-%m-%d %H:%M %Z"),
    )
    return enqueue(session=session, recipient=user.email, mail=mail)
