"""Signing in with Microsoft, on the portal's side: which app registration people sign in
through, who a signed-in person is in the portal (`access.microsoft_match` decides), and each
user's Entra refresh token, kept encrypted and dropped on sign-out, block and delete.

No token, code or secret goes into an audit entry or a log line.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access.audit import record
from embedportal.access.microsoft_match import (
    Candidate,
    MatchOutcome,
    decide,
    email_trusted,
    microsoft_allowed,
    parse_tenant_list,
    password_allowed,
)
from embedportal.access.microsoft_tokens import keep_refresh_token, link_of
from embedportal.access.organization import (
    SecretUnreadableError,
    decrypt_secret,
    effective_connection,
    get_organization,
)
from embedportal.access.users import UserInputError, create_user, find_user_by_email
from embedportal.db.models import MicrosoftAccount, Role, User
from embedportal.i18n import N_
from embedportal.powerbi.signin import MicrosoftSignIn, SignedInPerson, SignInApp
from embedportal.settings import Settings

logger = logging.getLogger("embedportal.access")


@dataclass(frozen=True)
class SignInMethods:
    """What the sign-in page offers: ``microsoft`` only when the registration is complete."""

    password: bool
    microsoft: bool


@dataclass(frozen=True)
class SignInRegistration:
    """The app registration people sign in with Microsoft through, and where it came from
    ("organization": Admin → Settings; "powerbi": the Power BI connection's; "missing")."""

    app: SignInApp | None
    source: str
    problem: str | None


def sign_in_registration(*, session: Session, settings: Settings) -> SignInRegistration:
    """Admin → Settings' own registration when it names any part of one; else the Power BI
    connection's (the built-in emulator's on the quick start), which may sign people in too."""
    organization = get_organization(session=session)
    own = (
        organization.microsoft_tenant_id.strip()
        or organization.microsoft_client_id.strip()
        or organization.microsoft_client_secret_encrypted
    )
    if own:
        secret = ""
        if organization.microsoft_client_secret_encrypted:
            try:
                secret = decrypt_secret(
                    settings=settings, encrypted=organization.microsoft_client_secret_encrypted
                )
            except SecretUnreadableError as error:
                return SignInRegistration(None, "organization", str(error))
        tenant = organization.microsoft_tenant_id.strip()
        client_id = organization.microsoft_client_id.strip()
        if not (tenant and client_id and secret):
            return SignInRegistration(
                None,
                "organization",
                N_(
                    "The sign-in app registration is incomplete: enter its tenant, client id "
                    "and client secret."
                ),
            )
        app = SignInApp(
            tenant=tenant,
            client_id=client_id,
            client_secret=secret,
            authority_host=settings.powerbi_authority_host,
        )
        return SignInRegistration(app, "organization", None)
    connection = effective_connection(session=session, settings=settings).connection
    if connection is None:
        return SignInRegistration(
            None, "missing", N_("No app registration: enter one, or connect Power BI first.")
        )
    app = SignInApp(
        tenant=connection.tenant_id,
        client_id=connection.client_id,
        client_secret=connection.client_secret,
        authority_host=connection.authority_host,
    )
    return SignInRegistration(app, "powerbi", None)


def sign_in_methods(*, session: Session, settings: Settings) -> SignInMethods:
    """What may be used to sign in now. Password sign-in stays open when Microsoft is chosen
    alone but cannot work (no registration), so nobody is locked out by a half-done setup."""
    organization = get_organization(session=session)
    methods = organization.sign_in_methods
    microsoft = microsoft_allowed(methods) and (
        sign_in_registration(session=session, settings=settings).app is not None
    )
    return SignInMethods(password=password_allowed(methods) or not microsoft, microsoft=microsoft)


class MicrosoftSignIns:
    """One long-lived MicrosoftSignIn per app registration (it keeps the tenant's signing
    keys and msal's client); a changed registration gets a new one. All closed at shutdown."""

    def __init__(self) -> None:
        self._flows: dict[SignInApp, MicrosoftSignIn] = {}

    def get(self, app: SignInApp) -> MicrosoftSignIn:
        flow = self._flows.get(app)
        if flow is None:
            flow = MicrosoftSignIn(app)
            self._flows[app] = flow
        return flow

    async def aclose(self) -> None:
        flows, self._flows = list(self._flows.values()), {}
        for flow in flows:
            flow.close()


# --- who signed in -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MicrosoftRefusal:
    """A sign-in Entra vouched for, refused by the portal."""

    outcome: MatchOutcome


def _candidate(user: User, link: MicrosoftAccount | None) -> Candidate:
    return Candidate(is_blocked=user.is_blocked, has_link=link is not None)


def admit_person(
    *,
    session: Session,
    settings: Settings,
    person: SignedInPerson,
    registration_tenant: str,
    now: datetime,
) -> User | MicrosoftRefusal:
    """The portal user ``person`` is (linked, found by e-mail or signed up), their refresh
    token kept; or why not. Audited either way."""
    organization = get_organization(session=session)
    tenant_id = person.tenant_id.lower()
    link = session.scalar(
        select(MicrosoftAccount).where(
            MicrosoftAccount.tenant_id == tenant_id,
            MicrosoftAccount.object_id == person.object_id,
        )
    )
    linked_user = session.get(User, link.user_id) if link is not None else None
    email = (person.email or person.username).strip()
    by_email = (
        find_user_by_email(session=session, email=email) if linked_user is None and email else None
    )
    signup_tenants, _bad = parse_tenant_list(organization.microsoft_signup_tenants)
    outcome = decide(
        linked=_candidate(linked_user, link) if linked_user is not None else None,
        by_email=(
            _candidate(by_email, link_of(session=session, user_id=by_email.id))
            if by_email is not None
            else None
        ),
        email_is_trusted=email_trusted(
            tenant_id=tenant_id,
            registration_tenant=registration_tenant,
            signup_tenants=signup_tenants,
        ),
        signup_allowed=tenant_id in signup_tenants,
    )
    user: User | None = linked_user if outcome == MatchOutcome.SIGNED_IN else by_email
    if outcome == MatchOutcome.SIGNED_UP:
        user = _sign_up(session=session, person=person, email=email)
        if user is None:
            outcome = MatchOutcome.UNKNOWN
    if not outcome.admitted or user is None:
        found = linked_user or by_email
        record(
            session=session,
            actor=None,
            action="login.microsoft_refused",
            target_type="user" if found is not None else "",
            target_id=str(found.id) if found is not None else "",
            detail={"reason": outcome.value, "username": email, "tenant": tenant_id},
        )
        session.flush()
        return MicrosoftRefusal(outcome)
    if outcome in (MatchOutcome.LINKED, MatchOutcome.SIGNED_UP):
        session.add(
            MicrosoftAccount(user_id=user.id, tenant_id=tenant_id, object_id=person.object_id)
        )
        session.flush()
        record(
            session=session,
            actor=user,
            action="microsoft.linked",
            target_type="user",
            target_id=str(user.id),
            detail={"tenant": tenant_id, "object_id": person.object_id},
        )
    keep_refresh_token(
        session=session,
        settings=settings,
        user_id=user.id,
        refresh_token=person.token.refresh_token,
    )
    user.last_login_at = now
    record(
        session=session,
        actor=user,
        action="login.microsoft",
        target_type="user",
        target_id=str(user.id),
        detail={"tenant": tenant_id, "how": outcome.value},
    )
    session.flush()
    return user


def _sign_up(*, session: Session, person: SignedInPerson, email: str) -> User | None:
    """A viewer for a person from a tenant allowed to sign up. Their password is random and
    never told: they sign in with Microsoft (an administrator may set one later)."""
    try:
        return create_user(
            session=session,
            email=email,
            password=secrets.token_urlsafe(32),
            name=person.name,
            role=Role.VIEWER,
            actor=None,
        )
    except UserInputError as error:
        logger.info("microsoft sign-up refused: %s", sorted(error.errors))
        return None
