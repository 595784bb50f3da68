"""The signed-in user's own page: language and password."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from embedportal import i18n
from embedportal.access.groups import groups_of
from embedportal.access.passwords import MIN_STRENGTH, STRENGTH_LEVELS, password_strength
from embedportal.access.two_step import is_enabled as two_step_enabled
from embedportal.access.users import UserInputError, change_own_password, set_language
from embedportal.db.models import User
from embedportal.i18n import _
from embedportal.web.deps import AppSettings, CsrfProtected, CurrentUser, DbSession
from embedportal.web.forms import PasswordStrengthForm
from embedportal.web.routes.auth import remember_language
from embedportal.web.templating import flash_redirect, render, render_form

router = APIRouter(prefix="/account", tags=["account"], include_in_schema=False)

BROWSER = "browser"  # the form's value for "follow the browser" (User.language = None)
# Longer than any password the rules allow: the meter has nothing to add past it.
MAX_METER_LENGTH = 256


def _page(
    request: Request,
    *,
    db: DbSession,
    user: User,
    errors: dict[str, str] | None = None,
) -> Response:
    return render_form(
        request,
        "account.html",
        {
            "user": user,
            "groups": groups_of(session=db, user=user),
            "chosen_language": user.language or BROWSER,
            "two_step_enabled": two_step_enabled(session=db, user_id=user.id),
            "errors": errors or {},
        },
        refused=bool(errors),
    )


@router.get("")
def account_page(request: Request, db: DbSession, user: CurrentUser) -> Response:
    return _page(request, db=db, user=user)


@router.post("/language", dependencies=[CsrfProtected])
def change_language(
    request: Request,
    db: DbSession,
    user: CurrentUser,
    settings: AppSettings,
    language: Annotated[str, Form()] = BROWSER,
) -> Response:
    chosen = None if language == BROWSER else language
    try:
        set_language(session=db, user=user, language=chosen)
    except UserInputError as error:
        return _page(request, db=db, user=user, errors=error.errors)
    db.commit()
    # Speak the new language at once, on the very page the redirect leads to.
    i18n.activate(
        chosen or i18n.negotiate(request.headers.get("accept-language"), settings.default_language)
    )
    response = flash_redirect(request, "/account", _("Your language is saved."))
    # The sign-in page, which knows no user, speaks the same language after signing out.
    remember_language(response, request=request, settings=settings, language=chosen)
    return response


@router.post("/password", dependencies=[CsrfProtected])
def change_password(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    user: CurrentUser,
    current_password: Annotated[str, Form()] = "",
    new_password: Annotated[str, Form()] = "",
    repeat_password: Annotated[str, Form()] = "",
) -> Response:
    try:
        change_own_password(
            session=db,
            user=user,
            current_password=current_password,
            new_password=new_password,
            repeat_password=repeat_password,
            keep_session_id=request.state.web_session_id,
            default_language=settings.default_language,
        )
    except UserInputError as error:
        return _page(request, db=db, user=user, errors=error.errors)
    db.commit()
    return flash_redirect(
        request,
        "/account",
        _("Your password is changed. Your other browsers and devices are signed out."),
    )


@router.post("/password-strength", dependencies=[CsrfProtected])
def password_strength_meter(
    request: Request, user: CurrentUser, form: Annotated[PasswordStrengthForm, Form()]
) -> Response:
    """The strength meter under a new-password field (htmx, as the password is typed): the same
    zxcvbn score the rules use, so "too easy" here is what the form would refuse. Nothing typed
    is stored or logged."""
    typed = form.typed[:MAX_METER_LENGTH]
    # The new-user form names the person the password is for; otherwise it is the user's own.
    inputs = (form.email, form.name) if form.email or form.name else (user.email, user.name)
    score = password_strength(typed, user_inputs=inputs) if typed else None
    return render(
        request,
        "_password_strength.html",
        {"score": score, "levels": STRENGTH_LEVELS - 1, "acceptable": MIN_STRENGTH},
    )
