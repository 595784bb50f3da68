"""One call per change to how a user signs in, for whatever must hear of it.

Every service that changes a credential calls :func:`credential_changed` once per change,
after the change and its audit entry, so a notice to the user (an e-mail, ASVS 2.2.3) hooks in
here rather than in each route. Today nothing else listens: the audit entry is the record.
"""

from __future__ import annotations

import enum

from sqlalchemy.orm import Session

from embedportal.db.models import User


class CredentialChange(enum.StrEnum):
    TWO_STEP_ENABLED = "two_step_enabled"
    TWO_STEP_DISABLED = "two_step_disabled"
    TWO_STEP_RESET = "two_step_reset"
    RECOVERY_CODE_USED = "recovery_code_used"
    RECOVERY_CODES_RENEWED = "recovery_codes_renewed"


def credential_changed(
    *, session: Session, user: User, change: CredentialChange, actor: User | None
) -> None:
    """``change`` happened to ``user``'s credentials (``actor`` did it; None: the user at
    sign-in, or the command line). A no-op until a notifier is wired in."""
    del session, user, change, actor
