"""Two-step sign-in: its second page at sign-in, and setting it up or off on the account page."""

from __future__ import annotations

import math
from typing import Annotated

import segno
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from embedportal.access import two_step
from embedportal.access.audit_log import organization_zone
from embedportal.access.login import LoginFailure, LoginFailureReason, complete_second_step
from embedportal.access.organization import get_organization
from embedportal.access.users import UserInputError
from embedportal.db.base import utcnow
from embedportal.db.models import User
from embedportal.i18n import _
from embedportal.web.deps import (
    AppSettings,
    ClientAddress,
    CsrfProtected,
    CurrentUser,
    DbSession,
    NotSignedIn,
)
from embedportal.web.forms import DisableTwoStepForm, TwoStepCodeForm
from embedportal.web.pending_sign_in import (
    PendingSignIn,
    forget_pending_sign_in,
    pending_sign_in_of,
)
from embedportal.web.routes.auth import failure_message, finish_sign_in
from embedportal.web.templating import flash_redirect, render, render_form

router = APIRouter(tags=["sign-in"], include_in_schema=False)


def pending_sign_in(request: Request, settings: AppSettings) -> PendingSignIn:
    """The half-done sign-in the browser holds; without one, back to the first page."""
    pending = pending_sign_in_of(request, settings=settings)
    if pending is None:
        raise NotSignedIn()
    return pending


Pending = Annotated[PendingSignIn, Depends(pending_sign_in)]


def _code_page(
    request: Request, *, errors: dict[str, str] | None = None, status_code: int = 200
) -> Response:
    return render(request, "login_two_step.html", {"errors": errors or {}}, status_code=status_code)


@router.get("/login/two-step")
def second_step_page(request: Request, _pending: Pending) -> Response:
    return _code_page(request)


def _start_again(request: Request) -> Response:
    response = flash_redirect(
        request, "/login", _("Sign in again: that sign-in was not finished."), category="info"
    )
    forget_pending_sign_in(response)
    return response


@router.post("/login/two-step", dependencies=[CsrfProtected])
def second_step(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    address: ClientAddress,
    pending: Pending,
    form: Annotated[TwoStepCodeForm, Form()],
) -> Response:
    user = db.get(User, pending.user_id)
    if user is None or not pending.still_earned_by(user):
        return _start_again(request)
    if not form.code.strip():
        return _code_page(
            request, errors={"code": _("Enter the code from your app.")}, status_code=400
        )
    now = utcnow()
    result = complete_second_step(
        session=db,
        user_id=user.id,
        code=form.code,
        client_address=address,
        settings=settings,
        now=now,
    )
    if isinstance(result, LoginFailure):
        zone = organization_zone(session=db)
        local = result.locked_until.astimezone(zone) if result.locked_until else None
        db.commit()  # the failed code counts even though the answer is an error
        message = (
            failure_message(result, locked_until_local=local)
            if result.locked_until is not None or result.reason != LoginFailureReason.INVALID
            else _("That code is not right. Try the next one your app shows, or a recovery code.")
        )
        response = _code_page(
            request,
            errors={"_form": message},
            status_code=429 if result.locked_until is not None else 400,
        )
        if result.locked_until is not None:
            wait = (result.locked_until - now).total_seconds()
            response.headers["Retry-After"] = str(max(math.ceil(wait), 1))
        return response
    return finish_sign_in(
        request, db=db, settings=settings, user=result, next_url=pending.next_url, now=now
    )


# --- the account page's part -----------------------------------------------------------------


def qr_code_svg(uri: str) -> Markup:
    """The address as a QR code in inline SVG: drawn by the server, no script, no image fetched.
    segno writes only path data from the address's bits, so the markup carries no text of it."""
    return Markup(segno.make(uri, error="m").svg_inline(scale=4, border=4, omitsize=False))


def _setup_page(
    request: Request,
    *,
    db: DbSession,
    settings: AppSettings,
    user: User,
    errors: dict[str, str] | None = None,
) -> Response:
    organization = get_organization(session=db)
    pending = two_step.pending_enrolment(
        session=db, user=user, settings=settings, issuer=request.state.organization_name
    )
    return render_form(
        request,
        "account_two_step.html",
        {
            "enabled": two_step.is_enabled(session=db, user_id=user.id),
            "pending": pending,
            "qr_code": qr_code_svg(pending.uri) if pending else None,
            "codes_left": two_step.recovery_codes_left(session=db, user_id=user.id),
            "required": user.is_admin and two_step.required_for_admins(organization, settings),
            "errors": errors or {},
        },
        refused=bool(errors),
    )


@router.get("/account/two-step")
def two_step_page(
    request: Request, db: DbSession, settings: AppSettings, user: CurrentUser
) -> Response:
    return _setup_page(request, db=db, settings=settings, user=user)


@router.post("/account/two-step/start", dependencies=[CsrfProtected])
def start_enrolment(
    request: Request, db: DbSession, settings: AppSettings, user: CurrentUser
) -> Response:
    try:
        two_step.begin_enrolment(
            session=db, user=user, settings=settings, issuer=request.state.organization_name
        )
    except UserInputError as error:
        return _setup_page(request, db=db, settings=settings, user=user, errors=error.errors)
    db.commit()
    return RedirectResponse("/account/two-step", status_code=303)


@router.post("/account/two-step/confirm", dependencies=[CsrfProtected])
def confirm_enrolment(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    user: CurrentUser,
    form: Annotated[TwoStepCodeForm, Form()],
) -> Response:
    """Turn it on. The answer is the recovery codes themselves, not a redirect: they are shown
    this once and kept nowhere in clear (no cookie, no row) for a next page to read."""
    try:
        codes = two_step.confirm_enrolment(
            session=db, user=user, code=form.code, settings=settings, now=utcnow()
        )
    except UserInputError as error:
        return _setup_page(request, db=db, settings=settings, user=user, errors=error.errors)
    db.commit()
    return render(request, "account_two_step_codes.html", {"codes": codes})


@router.post("/account/two-step/cancel", dependencies=[CsrfProtected])
def cancel_enrolment(db: DbSession, user: CurrentUser) -> Response:
    two_step.cancel_enrolment(session=db, user=user)
    db.commit()
    return RedirectResponse("/account/two-step", status_code=303)


@router.post("/account/two-step/recovery-codes", dependencies=[CsrfProtected])
def renew_recovery_codes(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    user: CurrentUser,
    form: Annotated[DisableTwoStepForm, Form()],
) -> Response:
    """New recovery codes, shown as the answer for the reason `confirm_enrolment` gives."""
    try:
        codes = two_step.renew_recovery_codes(
            session=db,
            user=user,
            code_or_password=form.code_or_password,
            settings=settings,
            now=utcnow(),
        )
    except UserInputError as error:
        # Keyed apart from the "turn off" form's field, which shares the page's `errors`.
        errors = {
            ("renew_proof" if field == "code_or_password" else field): message
            for field, message in error.errors.items()
        }
        return _setup_page(request, db=db, settings=settings, user=user, errors=errors)
    db.commit()
    return render(request, "account_two_step_codes.html", {"codes": codes, "renewed": True})


@router.post("/account/two-step/disable", dependencies=[CsrfProtected])
def disable(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    user: CurrentUser,
    form: Annotated[DisableTwoStepForm, Form()],
) -> Response:
    try:
        two_step.disable_two_step(
            session=db,
            user=user,
            code_or_password=form.code_or_password,
            organization=get_organization(session=db),
            settings=settings,
            now=utcnow(),
        )
    except UserInputError as error:
        return _setup_page(request, db=db, settings=settings, user=user, errors=error.errors)
    db.commit()
    return flash_redirect(request, "/account", _("Two-step sign-in is off."))
