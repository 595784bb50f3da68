"""One call per change to how a user signs in, for whatever must hear of it.

Every service that changes a credential calls :func:`credential_changed` once per change,
after the change and its audit entry, so the notice to the user (an e-mail, ASVS 2.2.3) is
queued here rather than in each route.
"""

from __future__ import annotations

import enum

from sqlalchemy.orm import Session

from embedportal.access.credential_notices import notify_credential_changed
from embedportal.db.models import User
from embedportal.i18n import N_


class CredentialChange(enum.StrEnum):
    TWO_STEP_ENABLED = "two_step_enabled"
    TWO_STEP_DISABLED = "two_step_disabled"
    TWO_STEP_RESET = "two_step_reset"
    RECOVERY_CODE_USED = "recovery_code_used"
    RECOVERY_CODES_RENEWED = "recovery_codes_renewed"


# What the notice says, marked for translation (composed in the recipient's language).
_NOTICES = {
    CredentialChange.TWO_STEP_ENABLED: N_("Two-step sign-in was turned on for your account."),
    CredentialChange.TWO_STEP_DISABLED: N_("Two-step sign-in was turned off for your account."),
    CredentialChange.TWO_STEP_RESET: N_(
        "An administrator reset two-step sign-in for your account: your password alone signs "
        "you in until you set it up again."
    ),
    CredentialChange.RECOVERY_CODE_USED: N_("A recovery code was used to sign in to your account."),
    CredentialChange.RECOVERY_CODES_RENEWED: N_(
        "New recovery codes were made for your account; the earlier ones no longer work."
    ),
}


def credential_changed(
    *,
    session: Session,
    user: User,
    change: CredentialChange,
    actor: User | None,
    default_language: str = "en",
) -> None:
    """``change`` happened to ``user``'s credentials (``actor`` did it; None: the user at
    sign-in, or the command line): the user gets a notice by mail."""
    del actor  # the notice is the same whoever did it; the audit entry names them
    notify_credential_changed(
        session=session, user=user, what=_NOTICES[change], default_language=default_language
    )
