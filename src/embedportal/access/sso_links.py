"""Single sign-on links: the organization's own application opens the portal for one of its
users without a second sign-in (docs/embedding-sso.md).

The application, holding an API key with `sso:issue`, asks for a link for a user (and
optionally a report). The link carries a random secret, of which only the sha256 is kept; it
works once, within minutes. Using it is one conditional UPDATE (unused and unexpired), so two
browsers racing with one link get one session between them. Who may open what is checked when
the link is issued and again when it is used: a user blocked, or a grant removed, in between
gets the refusal, not the report.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from embedportal.access.audit import record
from embedportal.access.grants import can_view
from embedportal.access.view_filters import ReportFilter
from embedportal.db.models import Report, SsoLink, User

DEFAULT_LIFETIME = timedelta(minutes=5)
MIN_LIFETIME = timedelta(seconds=30)
MAX_LIFETIME = timedelta(minutes=10)
# Used and expired links are kept a day (so a second use is told "already used", not
# "unknown"), then dropped when the next link is issued.
KEPT_AFTER_EXPIRY = timedelta(days=1)


class IssueRefusal(enum.Enum):
    """Why no link is issued (the API's codes)."""

    USER_BLOCKED = "UserBlocked"
    REPORT_NOT_ALLOWED = "ReportNotAllowed"


class LinkRefusal(enum.Enum):
    """Why an opened link signs nobody in."""

    UNKNOWN = "unknown"  # never issued, mistyped, or dropped long after it expired
    USED = "used"
    EXPIRED = "expired"
    USER_BLOCKED = "user_blocked"
    REPORT_NOT_ALLOWED = "report_not_allowed"


@dataclass(frozen=True)
class IssuedLink:
    secret: str
    record: SsoLink


@dataclass(frozen=True)
class RedeemedLink:
    link: SsoLink
    user: User


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_link(
    *,
    session: Session,
    user: User,
    report: Report | None,
    hide_navigation: bool,
    tv: bool,
    lifetime: timedelta,
    api_key_name: str,
    now: datetime,
    filters: list[ReportFilter] | None = None,
) -> IssuedLink | IssueRefusal:
    """A new link for ``user`` (to ``report``, or to their list of reports), valid for
    ``lifetime`` (clamped to the bounds above); audited."""
    if user.is_blocked:
        return IssueRefusal.USER_BLOCKED
    if report is not None and not can_view(session=session, user=user, report=report):
        return IssueRefusal.REPORT_NOT_ALLOWED
    session.execute(delete(SsoLink).where(SsoLink.expires_at < now - KEPT_AFTER_EXPIRY))
    lifetime = min(max(lifetime, MIN_LIFETIME), MAX_LIFETIME)
    secret = secrets.token_urlsafe(32)
    link = SsoLink(
        id=_hash(secret),
        user_id=user.id,
        report_id=report.id if report is not None else None,
        hide_navigation=hide_navigation,
        tv=tv,
        view_filters=[item.model_dump(mode="json") for item in filters or []],
        api_key_name=api_key_name[:200],
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(link)
    record(
        session=session,
        actor=None,
        action="sso.link_issued",
        target_type="user",
        target_id=str(user.id),
        detail={
            "email": user.email,
            "report_id": link.report_id,
            "expires_at": link.expires_at.isoformat(),
        },
    )
    session.flush()
    return IssuedLink(secret=secret, record=link)


def redeem_link(*, session: Session, secret: str, now: datetime) -> RedeemedLink | LinkRefusal:
    """Use the link: the first caller gets it (its user and report checked again), every
    later one a refusal saying why."""
    link_id = _hash(secret)
    claimed = session.execute(
        update(SsoLink)
        .where(SsoLink.id == link_id, SsoLink.used_at.is_(None), SsoLink.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    link = session.get(SsoLink, link_id, populate_existing=True)
    if link is None:
        return LinkRefusal.UNKNOWN
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return LinkRefusal.USED if link.used_at is not None else LinkRefusal.EXPIRED
    user = session.get(User, link.user_id)
    if user is None or user.is_blocked:
        return LinkRefusal.USER_BLOCKED
    if link.report_id is not None:
        report = session.get(Report, link.report_id)
        if report is None or not can_view(session=session, user=user, report=report):
            return LinkRefusal.REPORT_NOT_ALLOWED
    record(
        session=session,
        actor=user,
        action="sso.signed_in",
        target_type="user",
        target_id=str(user.id),
        detail={"report_id": link.report_id, "issued_by": link.api_key_name},
    )
    session.flush()
    return RedeemedLink(link=link, user=user)
