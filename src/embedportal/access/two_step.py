"""Two-step sign-in (TOTP, access/totp.py): enrolment, the second step, recovery codes, reset.

The authenticator's secret is stored encrypted (Fernet, with a key derived from the secret key
for this purpose alone), so a copy of the database alone cannot mint codes. Recovery codes are
random (about 59 bits each) and kept only as their SHA-256: a slow hash adds nothing to a value
nobody can guess, and the throttles bound the tries anyway.

Accepting a code records its time step with a compare-and-set (``UPDATE … WHERE last_used_step
< step``), so two requests racing with one code cannot both pass (ASVS 2.8.4); a recovery code
is spent the same way (``WHERE used_at IS NULL``).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from embedportal.access.audit import record
from embedportal.access.credential_events import CredentialChange, credential_changed
from embedportal.access.passwords import verify_password
from embedportal.access.totp import (
    SECRET_BYTES,
    encode_secret,
    grouped,
    matching_step,
    normalised_code,
    provisioning_uri,
)
from embedportal.access.users import UserInputError
from embedportal.db.models import Organization, TwoStepCredential, TwoStepRecoveryCode, User
from embedportal.i18n import _
from embedportal.settings import Settings

# The organization's row (access/organization.py, which imports this module's neighbours).
ORGANIZATION_ID = 1
RECOVERY_CODE_COUNT = 10
# No 0/o, 1/l/i: a code copied from paper is read back right.
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_CODE_LENGTH = 12
# Longer than any code or recovery code: what is past it is not looked at.
MAX_TYPED_CODE_LENGTH = 64


class SecondFactor(enum.StrEnum):
    APP = "app"
    RECOVERY_CODE = "recovery_code"


@dataclass(frozen=True)
class PendingEnrolment:
    """What the enrolment page shows: the secret to type in, and the address its QR code
    carries."""

    secret: str
    uri: str

    @property
    def grouped_secret(self) -> str:
        return grouped(self.secret)


def _fernet(settings: Settings) -> Fernet:
    digest = hashlib.sha256(
        b"embedportal/two-step-secret\0" + settings.secret_key.get_secret_value().encode()
    ).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _secret_of(credential: TwoStepCredential, settings: Settings) -> bytes | None:
    """The stored secret, or None when it cannot be read (the secret key changed): then no code
    matches, and an administrator resets the user's two-step sign-in."""
    try:
        return _fernet(settings).decrypt(credential.secret_encrypted.encode("ascii"))
    except (InvalidToken, ValueError):
        return None


def _hash_recovery_code(code: str) -> str:
    return hashlib.sha256(b"embedportal/recovery-code\0" + code.encode()).hexdigest()


def _normalised_recovery_code(typed: str) -> str:
    return typed.replace("-", "").replace(" ", "").strip().lower()


def _shown_recovery_code(code: str) -> str:
    return "-".join(code[index : index + 4] for index in range(0, len(code), 4))


def _audit(
    *, session: Session, actor: User | None, action: str, user: User, **detail: object
) -> None:
    record(
        session=session,
        actor=actor,
        action=action,
        target_type="user",
        target_id=str(user.id),
        detail={"email": user.email, **detail},
    )


# --- who has it, who must --------------------------------------------------------------------


def credential_of(*, session: Session, user_id: int) -> TwoStepCredential | None:
    return session.get(TwoStepCredential, user_id)


def is_enabled(*, session: Session, user_id: int) -> bool:
    credential = credential_of(session=session, user_id=user_id)
    return credential is not None and credential.enabled_at is not None


def enabled_user_ids(*, session: Session, user_ids: Collection[int]) -> set[int]:
    """Which of these users sign in with two steps (for Admin → Users)."""
    if not user_ids:
        return set()
    return set(
        session.scalars(
            select(TwoStepCredential.user_id).where(
                TwoStepCredential.user_id.in_(list(user_ids)),
                TwoStepCredential.enabled_at.is_not(None),
            )
        )
    )


def required_for_admins(organization: Organization, settings: Settings) -> bool:
    """The organization's rule, or while nobody has chosen: on in production, off elsewhere,
    so the quick start's demo administrator signs in with the README's password alone."""
    if organization.require_two_step_for_admins is not None:
        return organization.require_two_step_for_admins
    return settings.environment == "production"


def must_enrol(
    *, session: Session, user: User, organization: Organization, settings: Settings
) -> bool:
    """An administrator the rule applies to who has no two-step sign-in yet."""
    return (
        user.is_admin
        and required_for_admins(organization, settings)
        and not is_enabled(session=session, user_id=user.id)
    )


def must_enrol_before_admin_pages(*, session: Session, user: User, settings: Settings) -> bool:
    """``must_enrol`` with the stored rule, read without creating the organization's row (an
    admin page's dependency must not write)."""
    if not user.is_admin:
        return False
    organization = session.get(Organization, ORGANIZATION_ID) or Organization()
    return must_enrol(session=session, user=user, organization=organization, settings=settings)


def recovery_codes_left(*, session: Session, user_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(TwoStepRecoveryCode)
            .where(TwoStepRecoveryCode.user_id == user_id, TwoStepRecoveryCode.used_at.is_(None))
        )
        or 0
    )


# --- enrolment -------------------------------------------------------------------------------


def pending_enrolment(
    *, session: Session, user: User, settings: Settings, issuer: str
) -> PendingEnrolment | None:
    """The enrolment begun and not confirmed yet, to show again (same secret) on reload."""
    credential = credential_of(session=session, user_id=user.id)
    if credential is None or credential.enabled_at is not None:
        return None
    secret = _secret_of(credential, settings)
    if secret is None:
        return None
    return PendingEnrolment(
        secret=encode_secret(secret),
        uri=provisioning_uri(secret, account=user.email, issuer=issuer),
    )


def begin_enrolment(
    *, session: Session, user: User, settings: Settings, issuer: str
) -> PendingEnrolment:
    """A new secret for the user's authenticator app, waiting for a code to confirm it. An
    earlier unconfirmed one is replaced."""
    credential = credential_of(session=session, user_id=user.id)
    if credential is not None and credential.enabled_at is not None:
        raise UserInputError(_("Two-step sign-in is already on."))
    secret = secrets.token_bytes(SECRET_BYTES)
    encrypted = _fernet(settings).encrypt(secret).decode("ascii")
    if credential is None:
        session.add(TwoStepCredential(user_id=user.id, secret_encrypted=encrypted))
    else:
        credential.secret_encrypted = encrypted
        credential.last_used_step = None
    session.flush()
    return PendingEnrolment(
        secret=encode_secret(secret),
        uri=provisioning_uri(secret, account=user.email, issuer=issuer),
    )


def _new_recovery_codes(*, session: Session, user: User) -> list[str]:
    session.execute(delete(TwoStepRecoveryCode).where(TwoStepRecoveryCode.user_id == user.id))
    codes = [
        "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    session.add_all(
        TwoStepRecoveryCode(user_id=user.id, code_hash=_hash_recovery_code(code)) for code in codes
    )
    session.flush()
    return [_shown_recovery_code(code) for code in codes]


def _accept_app_code(
    *,
    session: Session,
    credential: TwoStepCredential,
    typed: str,
    settings: Settings,
    now: datetime,
) -> bool:
    secret = _secret_of(credential, settings)
    if secret is None:
        return False
    step = matching_step(
        secret, typed, unix_seconds=now.timestamp(), last_used_step=credential.last_used_step
    )
    if step is None:
        return False
    taken = session.execute(
        update(TwoStepCredential)
        .where(
            TwoStepCredential.user_id == credential.user_id,
            or_(
                TwoStepCredential.last_used_step.is_(None),
                TwoStepCredential.last_used_step < step,
            ),
        )
        .values(last_used_step=step)
        .execution_options(synchronize_session=False)
    )
    session.expire(credential, ["last_used_step"])
    return bool(getattr(taken, "rowcount", 0) == 1)


def confirm_enrolment(
    *, session: Session, user: User, code: str, settings: Settings, now: datetime
) -> list[str]:
    """Turn two-step sign-in on with a code from the app just set up; the ten recovery codes,
    to show once (only their hashes are kept)."""
    credential = credential_of(session=session, user_id=user.id)
    if credential is None or credential.enabled_at is not None:
        raise UserInputError(_("Start the set-up again: it was not begun, or is already done."))
    if normalised_code(code[:MAX_TYPED_CODE_LENGTH]) is None:
        raise UserInputError(_("Enter the six digits your app shows."), field="code")
    if not _accept_app_code(
        session=session, credential=credential, typed=code, settings=settings, now=now
    ):
        raise UserInputError(
            _("That code is not right. Check the phone's clock and try the next code."),
            field="code",
        )
    credential.enabled_at = now
    codes = _new_recovery_codes(session=session, user=user)
    _audit(session=session, actor=user, action="two_step.enabled", user=user)
    credential_changed(
        session=session, user=user, change=CredentialChange.TWO_STEP_ENABLED, actor=user
    )
    return codes


# --- the second step at sign-in ----------------------------------------------------------------


def verify_second_factor(
    *, session: Session, user: User, typed: str, settings: Settings, now: datetime
) -> SecondFactor | None:
    """Which second factor ``typed`` is, when it is right and unused: a code from the app (its
    step then used up), or a recovery code (then spent). None otherwise. Audits a recovery
    code's use; the caller audits failures with the sign-in's address."""
    credential = credential_of(session=session, user_id=user.id)
    if credential is None or credential.enabled_at is None:
        return None
    typed = typed[:MAX_TYPED_CODE_LENGTH]
    if normalised_code(typed) is not None:
        accepted = _accept_app_code(
            session=session, credential=credential, typed=typed, settings=settings, now=now
        )
        return SecondFactor.APP if accepted else None
    candidate = _normalised_recovery_code(typed)
    if len(candidate) != RECOVERY_CODE_LENGTH:
        return None
    spent = session.execute(
        update(TwoStepRecoveryCode)
        .where(
            TwoStepRecoveryCode.user_id == user.id,
            TwoStepRecoveryCode.code_hash == _hash_recovery_code(candidate),
            TwoStepRecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(spent, "rowcount", 0) != 1:
        return None
    left = recovery_codes_left(session=session, user_id=user.id)
    _audit(
        session=session,
        actor=user,
        action="two_step.recovery_code_used",
        user=user,
        recovery_codes_left=left,
    )
    credential_changed(
        session=session, user=user, change=CredentialChange.RECOVERY_CODE_USED, actor=user
    )
    return SecondFactor.RECOVERY_CODE


# --- turning it off ----------------------------------------------------------------------------


def _remove(*, session: Session, user_id: int) -> bool:
    removed = session.execute(
        delete(TwoStepCredential)
        .where(TwoStepCredential.user_id == user_id)
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(TwoStepRecoveryCode).where(TwoStepRecoveryCode.user_id == user_id))
    session.expire_all()
    return bool(getattr(removed, "rowcount", 0))


def cancel_enrolment(*, session: Session, user: User) -> None:
    """Forget an enrolment begun and not confirmed (nothing to audit: it never signed in)."""
    credential = credential_of(session=session, user_id=user.id)
    if credential is not None and credential.enabled_at is None:
        _remove(session=session, user_id=user.id)


def _prove_it_is_them(
    *, session: Session, user: User, proof: str, settings: Settings, now: datetime
) -> None:
    """A current code, a recovery code (then spent) or the password, or UserInputError."""
    proof = proof[:1024]
    proved = bool(proof) and (
        verify_second_factor(session=session, user=user, typed=proof, settings=settings, now=now)
        is not None
        or verify_password(user.password_hash, proof)
    )
    if not proved:
        raise UserInputError(
            _("Enter a code from your app, a recovery code or your password."),
            field="code_or_password",
        )


def renew_recovery_codes(
    *, session: Session, user: User, code_or_password: str, settings: Settings, now: datetime
) -> list[str]:
    """Ten new recovery codes, to show once; the old ones stop working. Proved like turning it
    off: a current code, a recovery code or the password."""
    if not is_enabled(session=session, user_id=user.id):
        raise UserInputError(_("Two-step sign-in is not on."))
    _prove_it_is_them(
        session=session, user=user, proof=code_or_password, settings=settings, now=now
    )
    codes = _new_recovery_codes(session=session, user=user)
    _audit(session=session, actor=user, action="two_step.recovery_codes_renewed", user=user)
    credential_changed(
        session=session, user=user, change=CredentialChange.RECOVERY_CODES_RENEWED, actor=user
    )
    return codes


def disable_two_step(
    *,
    session: Session,
    user: User,
    code_or_password: str,
    organization: Organization,
    settings: Settings,
    now: datetime,
) -> None:
    """The user turns two-step sign-in off, proving it is them with a current code, a recovery
    code or their password. An administrator the organization requires it of cannot."""
    if not is_enabled(session=session, user_id=user.id):
        raise UserInputError(_("Two-step sign-in is not on."))
    if user.is_admin and required_for_admins(organization, settings):
        raise UserInputError(
            _("Your organization requires two-step sign-in for administrators: it stays on.")
        )
    _prove_it_is_them(
        session=session, user=user, proof=code_or_password, settings=settings, now=now
    )
    _remove(session=session, user_id=user.id)
    _audit(session=session, actor=user, action="two_step.disabled", user=user)
    credential_changed(
        session=session, user=user, change=CredentialChange.TWO_STEP_DISABLED, actor=user
    )


def reset_two_step(*, session: Session, user: User, actor: User | None) -> bool:
    """An administrator (or the command line) removes a user's two-step sign-in, e.g. after a
    lost phone: they sign in with their password and may set it up again. False (and nothing
    audited) when there was none."""
    if not _remove(session=session, user_id=user.id):
        return False
    _audit(session=session, actor=actor, action="two_step.reset", user=user)
    credential_changed(
        session=session, user=user, change=CredentialChange.TWO_STEP_RESET, actor=actor
    )
    return True
