""" "Forgot your password?" and the pages a mailed link opens to set a password."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import Response

from embedportal.access import password_links
from embedportal.access.password_links import LinkProblem, LinkRefused
from embedportal.access.users import UserInputError
from embedportal.i18n import N_, _
from embedportal.web.deps import AppSettings, ClientAddress, CsrfProtected, DbSession
from embedportal.web.forms import ForgotPasswordForm, NewPasswordForm
from embedportal.web.links import portal_base_url
from embedportal.web.templating import flash_redirect, render, render_form

router = APIRouter(prefix="/password", tags=["sign-in"], include_in_schema=False)

# A token is 43 URL-safe characters; anything far from that is no link of ours.
LinkToken = Annotated[str, Path(min_length=10, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]

PROBLEMS: dict[LinkProblem, str] = {
    LinkProblem.UNKNOWN: N_(
        "This link is not valid. It may have been replaced by a newer one: use the latest mail, "
        "or ask for a new link."
    ),
    LinkProblem.USED: N_("This link has been used already. Each link works once."),
    LinkProblem.EXPIRED: N_("This link has expired. Ask for a new one."),
    LinkProblem.PASSWORD_CHANGED: N_(
        "The password was changed after this link was sent, so the link no longer works."
    ),
}


@router.get("/forgot")
def forgot_page(request: Request) -> Response:
    return render(request, "password_forgot.html", {"values": ForgotPasswordForm(), "errors": {}})


@router.post("/forgot", dependencies=[CsrfProtected])
def forgot(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    address: ClientAddress,
    form: Annotated[ForgotPasswordForm, Form()],
) -> Response:
    """The same answer whatever the address: whether a mail goes out is never shown."""
    if not form.email.strip():
        return render_form(
            request,
            "password_forgot.html",
            {"values": form, "errors": {"email": _("Enter your e-mail address.")}},
            refused=True,
        )
    password_links.request_reset(
        session=db,
        email=form.email,
        client_address=address,
        settings=settings,
        base_url=portal_base_url(request, settings),
    )
    db.commit()
    return flash_redirect(
        request,
        "/password/forgot/sent",
        _("If that address has an account here, a mail with a link is on its way."),
        category="info",
    )


@router.get("/forgot/sent")
def forgot_sent_page(request: Request, settings: AppSettings) -> Response:
    return render(
        request, "password_forgot_sent.html", {"minutes": settings.password_reset_minutes}
    )


def _refused(request: Request, error: LinkRefused) -> Response:
    return render(
        request,
        "password_link_refused.html",
        {"reason": _(PROBLEMS[error.problem])},
        status_code=400,
    )


@router.get("/set/{token}")
def set_password_page(
    request: Request, db: DbSession, settings: AppSettings, token: LinkToken
) -> Response:
    try:
        valid = password_links.check_link(session=db, token=token, settings=settings)
    except LinkRefused as error:
        return _refused(request, error)
    return render(
        request,
        "password_set.html",
        {
            "token": token,
            "email": valid.user.email,
            "name": valid.user.name,
            "invited": valid.link.purpose == password_links.INVITATION,
            "errors": {},
        },
    )


@router.post("/set/{token}", dependencies=[CsrfProtected])
def set_password(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    token: LinkToken,
    form: Annotated[NewPasswordForm, Form()],
) -> Response:
    try:
        user = password_links.set_password_with_link(
            session=db,
            token=token,
            new_password=form.new_password,
            repeat_password=form.repeat_password,
            settings=settings,
        )
    except LinkRefused as error:
        return _refused(request, error)
    except UserInputError as error:
        try:
            valid = password_links.check_link(session=db, token=token, settings=settings)
        except LinkRefused as refused:  # spent by another post meanwhile
            return _refused(request, refused)
        return render_form(
            request,
            "password_set.html",
            {
                "token": token,
                "email": valid.user.email,
                "name": valid.user.name,
                "invited": valid.link.purpose == password_links.INVITATION,
                "errors": error.errors,
            },
            refused=True,
        )
    db.commit()
    return flash_redirect(
        request,
        "/login",
        _("Your password is set, %(email)s. Sign in with it.", email=user.email),
    )
