"""The outbox: mails written in the caller's transaction, claimed and delivered by a sender.

A mail is enqueued in the same transaction as the change that causes it, so a rolled-back
change sends nothing and a committed one is never without its mail.

Claiming: a sender marks due rows as its own (`claimed_by`, until `claimed_until`) in a short
transaction of its own, before it talks to any server. On PostgreSQL the candidates are read
``FOR UPDATE SKIP LOCKED``, so two instances claiming at once take different rows and never
wait for each other; on SQLite each row is claimed with an UPDATE conditional on its still being
unclaimed, and only a row the UPDATE changed is the claimer's. A sender that dies holding a
claim lets it lapse; the mail is then claimed again (sent at least once, rarely twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from embedportal.db.base import utcnow
from embedportal.db.models import MailState, OutboxMail
from embedportal.mail.messages import ComposedMail
from embedportal.mail.retry import gives_up, retry_delay

# How long a claim holds: longer than one conversation with a server takes (its timeout).
CLAIM_LEASE = timedelta(minutes=5)
CLAIM_BATCH = 20


def enqueue(*, session: Session, recipient: str, mail: ComposedMail) -> OutboxMail:
    """Add a mail to the outbox in ``session``'s transaction; it leaves when that commits."""
    row = OutboxMail(
        kind=mail.kind,
        recipient=recipient,
        language=mail.language,
        subject=mail.subject[:300],
        text_body=mail.text_body,
        html_body=mail.html_body,
        state=MailState.PENDING,
        attempts=0,
        next_attempt_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def _due(now: datetime) -> list[ColumnElement[bool]]:
    return [
        OutboxMail.state == MailState.PENDING,
        OutboxMail.next_attempt_at <= now,
        or_(OutboxMail.claimed_until.is_(None), OutboxMail.claimed_until < now),
    ]


def claim_due(
    *,
    session: Session,
    holder: str,
    now: datetime | None = None,
    limit: int = CLAIM_BATCH,
    lease: timedelta = CLAIM_LEASE,
) -> list[OutboxMail]:
    """Claim up to ``limit`` due mails for ``holder``; the caller commits at once, then sends.
    Rows another sender claimed, or is claiming right now, are never returned."""
    now = now or utcnow()
    conditions = _due(now)
    candidates = select(OutboxMail.id).where(*conditions).order_by(OutboxMail.next_attempt_at)
    if session.get_bind().dialect.name == "postgresql":
        ids = list(session.scalars(candidates.limit(limit).with_for_update(skip_locked=True)))
        if not ids:
            return []
        session.execute(
            update(OutboxMail)
            .where(OutboxMail.id.in_(ids))
            .values(claimed_by=holder, claimed_until=now + lease)
            .execution_options(synchronize_session=False)
        )
        claimed = ids
    else:
        claimed = []
        for mail_id in session.scalars(candidates.limit(limit)).all():
            result = session.execute(
                update(OutboxMail)
                .where(OutboxMail.id == mail_id, *conditions)
                .values(claimed_by=holder, claimed_until=now + lease)
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) == 1:
                claimed.append(mail_id)
    if not claimed:
        return []
    return list(
        session.scalars(
            select(OutboxMail)
            .where(OutboxMail.id.in_(claimed), OutboxMail.claimed_by == holder)
            .order_by(OutboxMail.next_attempt_at)
            .execution_options(populate_existing=True)
        )
    )


def _mine(mail_id: int, holder: str) -> list[ColumnElement[bool]]:
    return [OutboxMail.id == mail_id, OutboxMail.claimed_by == holder]


def record_sent(
    *, session: Session, mail_id: int, holder: str, via: str, now: datetime | None = None
) -> None:
    """The mail has left. Its bodies are dropped once it went to a server: an invitation or
    reset link is not kept readable in the database (only its hash is, access/password_links).
    A mail that only went to the log (development) keeps them, for Admin → Outbox."""
    now = now or utcnow()
    values: dict[str, object] = {
        "state": MailState.SENT,
        "sent_at": now,
        "attempts": OutboxMail.attempts + 1,
        "claimed_by": None,
        "claimed_until": None,
        "delivered_to": via,
        "last_error": "",
    }
    if via != "log":
        values |= {"text_body": "", "html_body": ""}
    session.execute(
        update(OutboxMail)
        .where(*_mine(mail_id, holder))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def record_failure(
    *,
    session: Session,
    mail_id: int,
    holder: str,
    reason: str,
    permanent: bool,
    max_attempts: int,
    now: datetime | None = None,
) -> MailState:
    """An attempt failed: try again after a growing wait, or give up (the reason kept either
    way). Returns the mail's new state."""
    now = now or utcnow()
    row = session.get(OutboxMail, mail_id, populate_existing=True)
    if row is None or row.claimed_by != holder:
        return row.state if row is not None else MailState.FAILED
    row.attempts += 1
    row.last_error = reason[:500]
    row.claimed_by = None
    row.claimed_until = None
    if gives_up(failed_attempts=row.attempts, max_attempts=max_attempts, permanent=permanent):
        row.state = MailState.FAILED
        row.text_body = ""
        row.html_body = ""
    else:
        row.next_attempt_at = now + retry_delay(row.attempts)
    session.flush()
    return row.state


@dataclass(frozen=True)
class OutboxPage:
    mails: Sequence[OutboxMail]
    pending: int
    failed: int


def recent_mails(*, session: Session, limit: int = 100) -> OutboxPage:
    """The latest mails, newest first, and how many wait or failed (Admin → Outbox)."""
    mails = list(session.scalars(select(OutboxMail).order_by(OutboxMail.id.desc()).limit(limit)))
    counts = {
        state: len(session.scalars(select(OutboxMail.id).where(OutboxMail.state == state)).all())
        for state in (MailState.PENDING, MailState.FAILED)
    }
    return OutboxPage(
        mails=mails, pending=counts[MailState.PENDING], failed=counts[MailState.FAILED]
    )
