"""Two-step sign-in as a service: enrolment, codes used once, recovery codes, off and reset."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access.login import (
    LoginFailure,
    LoginFailureReason,
    SecondStepNeeded,
    authenticate,
    complete_second_step,
)
from embedportal.access.organization import get_organization
from embedportal.access.totp import decode_secret, encode_secret, hotp, time_step
from embedportal.access.two_step import (
    RECOVERY_CODE_COUNT,
    SecondFactor,
    begin_enrolment,
    cancel_enrolment,
    confirm_enrolment,
    disable_two_step,
    enabled_user_ids,
    is_enabled,
    must_enrol,
    pending_enrolment,
    recovery_codes_left,
    renew_recovery_codes,
    required_for_admins,
    reset_two_step,
    verify_second_factor,
)
from embedportal.access.users import UserInputError
from embedportal.db.base import utcnow
from embedportal.db.models import (
    AuditEntry,
    OutboxMail,
    Role,
    TwoStepCredential,
    TwoStepRecoveryCode,
)
from embedportal.settings import Settings
from tests.access.conftest import PASSWORD, NewUser
from tests.support.two_step import enrol

HERE = "198.51.100.7"


def _actions(db: Session) -> list[str]:
    return list(db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def test_enrolment_needs_a_right_code_and_gives_ten_recovery_codes_once(
    db: Session, new_user: NewUser, settings: Settings
) -> None:
    ana = new_user("ana@example.com")
    pending = begin_enrolment(session=db, user=ana, settings=settings, issuer="Acme")
    assert pending.uri.startswith("otpauth://totp/Acme:ana@example.com?secret=")
    # Shown again unchanged on reload; not on until confirmed.
    again = pending_enrolment(session=db, user=ana, settings=settings, issuer="Acme")
    assert again == pending
    assert not is_enabled(session=db, user_id=ana.id)
    with pytest.raises(UserInputError) as wrong:
        confirm_enrolment(session=db, user=ana, code="12345x", settings=settings, now=utcnow())
    assert "code" in wrong.value.errors
    secret = decode_secret(pending.secret)
    now = utcnow()
    wrong_code = hotp(secret, time_step(now.timestamp()) + 5)
    with pytest.raises(UserInputError):
        confirm_enrolment(session=db, user=ana, code=wrong_code, settings=settings, now=now)
    codes = confirm_enrolment(
        session=db,
        user=ana,
        code=hotp(secret, time_step(now.timestamp())),
        settings=settings,
        now=now,
    )
    assert len(codes) == len(set(codes)) == RECOVERY_CODE_COUNT
    assert is_enabled(session=db, user_id=ana.id)
    assert enabled_user_ids(session=db, user_ids=[ana.id, ana.id + 1]) == {ana.id}
    assert "two_step.enabled" in _actions(db)


def test_the_secret_and_the_recovery_codes_are_not_stored_readable(
    db: Session, new_user: NewUser, settings: Settings
) -> None:
    ana = new_user("ana@example.com")
    enrolled = enrol(db, ana, settings)
    credential = db.get(TwoStepCredential, ana.id)
    assert credential is not None
    assert encode_secret(enrolled.secret) not in credential.secret_encrypted
    stored = list(db.scalars(select(TwoStepRecoveryCode.code_hash)))
    assert len(stored) == RECOVERY_CODE_COUNT
    for code in enrolled.recovery_codes:
        plain = code.replace("-", "")
        assert all(plain not in value for value in stored)
    # A changed secret key reads no secret: no code matches (an administrator resets it).
    other = settings.model_copy(update={"secret_key": settings.secret_key.__class__("x" * 64)})
    assert (
        verify_second_factor(
            session=db, user=ana, typed=enrolled.code(), settings=other, now=utcnow()
        )
        is None
    )


def test_a_code_is_accepted_once_and_older_codes_never_again(
    db: Session, new_user: NewUser, settings: Settings
) -> None:
    """ASVS 2.8.4: a code seen over a shoulder is worthless once used."""
    ana = new_user("ana@example.com")
    enrolled = enrol(db, ana, settings)
    now = utcnow()
    code = enrolled.code(at=now)
    verify = lambda typed: verify_second_factor(  # noqa: E731
        session=db, user=ana, typed=typed, settings=settings, now=now
    )
    assert verify(code) == SecondFactor.APP
    assert verify(code) is None
    assert verify(enrolled.code(at=now, steps_ahead=-1)) is None  # older than the one used
    assert verify(enrolled.code(at=now, steps_ahead=1)) == SecondFactor.APP


def test_a_recovery_code_signs_in_once_and_is_audited(
    db: Session, new_user: NewUser, settings: Settings
) -> None:
    ana = new_user("ana@example.com")
    enrolled = enrol(db, ana, settings)
    first = enrolled.recovery_codes[0]
    verify = lambda typed: verify_second_factor(  # noqa: E731
        session=db, user=ana, typed=typed, settings=settings, now=utcnow()
    )
    # Typed with another case and without its dashes, it still counts.
    assert verify(first.replace("-", " ").upper()) == SecondFactor.RECOVERY_CODE
    assert verify(first) is None
    assert verify("abcd-efgh-jkmn") is None
    assert recovery_codes_left(session=db, user_id=ana.id) == RECOVERY_CODE_COUNT - 1
    entry = db.scalars(
        select(AuditEntry).where(AuditEntry.action == "two_step.recovery_code_used")
    ).one()
    assert entry.detail["recovery_codes_left"] == RECOVERY_CODE_COUNT - 1
    assert first not in json.dumps(entry.detail)


def test_disabling_needs_a_code_or_the_password(
    db: Session, new_user: NewUser, settings: Settings
) -> None:
    ana = new_user("ana@example.com")
    enrol(db, ana, settings)
    organization = get_organization(session=db)

    def disable(proof: str) -> None:
        disable_two_step(
            session=db,
            user=ana,
            code_or_password=proof,
            organization=organization,
            settings=settings,
            now=utcnow(),
        )

    with pytest.raises(UserInputError) as refused:
        disable("not-the-password")
    assert "code_or_password" in refused.value.errors
    disable(PASSWORD)
    assert not is_enabled(session=db, user_id=ana.id)
    assert db.scalar(select(TwoStepRecoveryCode)) is None
    assert "two_step.disabled" in _actions(db)


def test_an_administrator_it_is_required_of_cannot_turn_it_off(
    db: Session, new_user: NewUser, settings: Settings
) -> None:
    root = new_user("root@example.com", role=Role.ADMIN)
    enrol(db, root, settings)
    organization = get_organization(session=db)
    organization.require_two_step_for_admins = True
    with pytest.raises(UserInputError, match="requires two-step"):
        disable_two_step(
            session=db,
            user=root,
            code_or_password=PASSWORD,
            organization=organization,
            settings=settings,
            now=utcnow(),
        )
    assert is_enabled(session=db, user_id=root.id)


def test_the_rule_defaults_to_on_in_production_only(
    db: Session, new_user: NewUser, settings: Settings
) -> None:
    organization = get_organization(session=db)
    production = settings.model_copy(update={"environment": "production"})
    development = settings.model_copy(update={"environment": "development"})
    assert organization.require_two_step_for_admins is None
    assert required_for_admins(organization, production)
    assert not required_for_admins(organization, development)
    organization.require_two_step_for_admins = False
    assert not required_for_admins(organization, production)
    organization.require_two_step_for_admins = True
    assert required_for_admins(organization, development)
    root = new_user("root@example.com", role=Role.ADMIN)
    ana = new_user("ana@example.com")
    assert must_enrol(session=db, user=root, organization=organization, settings=settings)
    assert not must_enrol(session=db, user=ana, organization=organization, settings=settings)
    enrol(db, root, settings)
    assert not must_enrol(session=db, user=root, organization=organization, settings=settings)


def test_reset_removes_it_and_is_audited_and_cancel_forgets_a_pending_one(
    db: Session, new_user: NewUser, settings: Settings
) -> None:
    root = new_user("root@example.com", role=Role.ADMIN)
    ana = new_user("ana@example.com")
    enrol(db, ana, settings)
    assert reset_two_step(session=db, user=ana, actor=root)
    assert not reset_two_step(session=db, user=ana, actor=root)
    assert not is_enabled(session=db, user_id=ana.id)
    entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "two_step.reset")).one()
    assert entry.actor_email == "root@example.com" and entry.target_id == str(ana.id)
    begin_enrolment(session=db, user=ana, settings=settings, issuer="Acme")
    cancel_enrolment(session=db, user=ana)
    assert db.get(TwoStepCredential, ana.id) is None


def test_the_right_password_asks_for_the_code_and_the_code_signs_in(
    db: Session, new_user: NewUser, settings: Settings
) -> None:
    ana = new_user("ana@example.com")
    enrolled = enrol(db, ana, settings)
    db.commit()
    now = utcnow()
    first = authenticate(
        session=db,
        email=ana.email,
        password=PASSWORD,
        client_address=HERE,
        settings=settings,
        now=now,
    )
    assert first == SecondStepNeeded(user_id=ana.id)
    assert "login.succeeded" not in _actions(db)
    done = complete_second_step(
        session=db,
        user_id=ana.id,
        code=enrolled.code(at=now),
        client_address=HERE,
        settings=settings,
        now=now,
    )
    assert done == ana
    succeeded = db.scalars(select(AuditEntry).where(AuditEntry.action == "login.succeeded")).one()
    assert succeeded.detail["second_factor"] == "app"


def test_wrong_codes_count_in_the_throttles_like_wrong_passwords(
    db: Session, new_user: NewUser, settings: Settings
) -> None:
    """Knowing the password does not buy unlimited code guesses: the password's attempt stays
    counted, each code counts, and signing in with the password again resets nothing."""
    ana = new_user("ana@example.com")
    enrolled = enrol(db, ana, settings)
    db.commit()
    now = utcnow()
    results: list[object] = []
    for _round in range(settings.login_max_attempts):
        results.append(
            authenticate(
                session=db,
                email=ana.email,
                password=PASSWORD,
                client_address=HERE,
                settings=settings,
                now=now,
            )
        )
        results.append(
            complete_second_step(
                session=db,
                user_id=ana.id,
                code=enrolled.code(at=now, steps_ahead=7),
                client_address=HERE,
                settings=settings,
                now=now,
            )
        )
    locked = [
        result
        for result in results
        if isinstance(result, LoginFailure) and result.reason == LoginFailureReason.LOCKED
    ]
    assert locked, results
    # Held back, even the right code is not checked.
    held = complete_second_step(
        session=db,
        user_id=ana.id,
        code=enrolled.code(at=now),
        client_address=HERE,
        settings=settings,
        now=now + timedelta(seconds=1),
    )
    assert isinstance(held, LoginFailure) and held.reason == LoginFailureReason.LOCKED
    assert "two_step.failed" in _actions(db)


def test_two_requests_racing_with_one_code_let_only_one_in(
    db: Session, new_user: NewUser, settings: Settings, database_url: str
) -> None:
    """The second request read the credential before the first stored its step: the
    compare-and-set still refuses it."""
    from embedportal.db.session import create_db_engine, create_session_factory

    ana = new_user("ana@example.com")
    enrolled = enrol(db, ana, settings)
    db.commit()
    now = utcnow()
    code = enrolled.code(at=now)
    engine = create_db_engine(database_url)
    try:
        other = create_session_factory(engine)()
        try:
            late = other.get(type(ana), ana.id)
            assert late is not None
            stale = other.get(TwoStepCredential, ana.id)  # read, then held back
            assert stale is not None and stale.last_used_step is not None
            before = stale.last_used_step
            first = verify_second_factor(
                session=db, user=ana, typed=code, settings=settings, now=now
            )
            db.commit()
            # What `other` holds still allows the code; only the database's check refuses it.
            assert stale.last_used_step == before < time_step(now.timestamp())
            second = verify_second_factor(
                session=other, user=late, typed=code, settings=settings, now=now
            )
            other.commit()
        finally:
            other.close()
    finally:
        engine.dispose()
    assert (first, second) == (SecondFactor.APP, None)


def test_new_recovery_codes_need_proof_and_end_the_old_ones(
    db: Session, new_user: NewUser, settings: Settings
) -> None:
    ana = new_user("ana@example.com")
    enrolled = enrol(db, ana, settings)
    with pytest.raises(UserInputError):
        renew_recovery_codes(
            session=db, user=ana, code_or_password="wrong", settings=settings, now=utcnow()
        )
    fresh = renew_recovery_codes(
        session=db, user=ana, code_or_password=PASSWORD, settings=settings, now=utcnow()
    )
    assert len(fresh) == RECOVERY_CODE_COUNT and not set(fresh) & set(enrolled.recovery_codes)
    verify = lambda typed: verify_second_factor(  # noqa: E731
        session=db, user=ana, typed=typed, settings=settings, now=utcnow()
    )
    assert verify(enrolled.recovery_codes[0]) is None
    assert verify(fresh[0]) == SecondFactor.RECOVERY_CODE
    assert "two_step.recovery_codes_renewed" in _actions(db)


def test_turning_it_on_and_an_admin_reset_each_send_the_user_a_notice(
    db: Session, new_user: NewUser, settings: Settings
) -> None:
    """ASVS 2.2.3: a change to how someone signs in reaches them by mail."""
    root = new_user("root@example.com", role=Role.ADMIN)
    ana = new_user("ana@example.com")
    enrol(db, ana, settings)
    reset_two_step(session=db, user=ana, actor=root)
    db.flush()
    notices = db.scalars(
        select(OutboxMail).where(OutboxMail.recipient == "ana@example.com").order_by(OutboxMail.id)
    ).all()
    bodies = [mail.text_body for mail in notices]
    assert any("Two-step sign-in was turned on for your account." in body for body in bodies)
    assert any("An administrator reset two-step sign-in" in body for body in bodies)
