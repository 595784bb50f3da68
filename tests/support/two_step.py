"""Turning two-step sign-in on for a test user, and the codes their app would show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from embedportal.access.totp import decode_secret, hotp, time_step
from embedportal.access.two_step import begin_enrolment, confirm_enrolment
from embedportal.db.base import utcnow
from embedportal.db.models import User
from embedportal.settings import Settings

# Enrolment is confirmed a minute in the past, with that moment's code: the code a test types
# next (the current step's) is then never a replay, even if the clock crosses a step meanwhile.
ENROLLED_AGO = timedelta(seconds=60)


@dataclass(frozen=True)
class Enrolled:
    secret: bytes
    recovery_codes: list[str]

    def code(self, *, at: datetime | None = None, steps_ahead: int = 0) -> str:
        """The code the app shows at ``at`` (now), ``steps_ahead`` steps later."""
        moment = (at or utcnow()).timestamp()
        return hotp(self.secret, time_step(moment) + steps_ahead)


def enrol(session: Session, user: User, settings: Settings) -> Enrolled:
    """Set up and confirm two-step sign-in for ``user`` (flushed, not committed)."""
    pending = begin_enrolment(session=session, user=user, settings=settings, issuer="Tests")
    secret = decode_secret(pending.secret)
    then = utcnow() - ENROLLED_AGO
    codes = confirm_enrolment(
        session=session,
        user=user,
        code=hotp(secret, time_step(then.timestamp())),
        settings=settings,
        now=then,
    )
    return Enrolled(secret=secret, recovery_codes=codes)
