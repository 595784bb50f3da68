"""Administering users: list and search, create, change, block, set a password, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import Response

from embedportal.access import password_links, two_step, users
from embedportal.access.audit_log import organization_zone
from embedportal.access.grants import access_of
from embedportal.access.groups import groups_of
from embedportal.access.login import lockouts
from embedportal.access.organization import PowerBIClients
from embedportal.access.passwords import has_password
from embedportal.access.rls_check import roles_in_use_for_user, user_trials
from embedportal.access.users import UserInputError
from embedportal.db.base import utcnow
from embedportal.db.models import User
from embedportal.i18n import N_, _
from embedportal.settings import Settings
from embedportal.web.deps import (
    AdminUser,
    AppSettings,
    CsrfProtected,
    DbSession,
    IsHtmx,
    PowerBIClientsDep,
    PushHubDep,
    stored_or_404,
)
from embedportal.web.forms import (
    NewUserForm,
    PasswordForm,
    UnlockForm,
    UserEditForm,
    UserForm,
    UserListQuery,
)
from embedportal.web.links import portal_base_url
from embedportal.web.paging import Page
from embedportal.web.push import PushHub, notify_access_changed
from embedportal.web.rls_checks import RolesRefused, roles_refused
from embedportal.web.templating import flash_redirect, render, render_form

router = APIRouter(prefix="/admin/users", tags=["admin"], include_in_schema=False)

# Ids beyond a 32-bit integer are refused as bad input, not passed to the database to overflow.
UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]
# Changes that alter what a user may open or the identity their embed tokens carry (the e-mail is
# the RLS username when none is set): their open viewers are told to ask for a token again.
ACCESS_FIELDS = frozenset({"email", "role", "rls_username", "rls_roles"})


def _user_or_404(db: DbSession, user_id: int) -> User:
    return stored_or_404(db.get(User, user_id), N_("There is no such user."))


UsersQuery = Annotated[UserListQuery, Query()]


def _list_context(
    db: DbSession, settings: Settings, query: UserListQuery, *, message: str = ""
) -> dict[str, Any]:
    shown = Page.asked(query.page)
    locked = query.locked
    now = utcnow()
    # Every locked account, not only this page's: the list says how many there are.
    held = lockouts(session=db, settings=settings, now=now)
    result = users.list_users(
        session=db,
        search=query.q,
        offset=shown.offset,
        limit=shown.size,
        only_ids=held.keys() if locked else None,
    )
    return {
        "users": result.users,
        "two_step_ids": two_step.enabled_user_ids(
            session=db, user_ids=[user.id for user in result.users]
        ),
        "lockouts": held,
        "locked_only": locked,
        "message": message,
        "q": query.q,
        **shown.pager(result.total),
        "now": now,
        "zone": organization_zone(session=db),
    }


@router.get("")
def users_page(
    request: Request, db: DbSession, settings: AppSettings, _admin: AdminUser, query: UsersQuery
) -> Response:
    return render(request, "admin/users.html", _list_context(db, settings, query))


@router.get("/rows")
def users_rows(
    request: Request, db: DbSession, settings: AppSettings, _admin: AdminUser, query: UsersQuery
) -> Response:
    """The list alone: the htmx target of the search box."""
    return render(request, "admin/_users_table.html", _list_context(db, settings, query))


@router.get("/new")
def new_user_page(request: Request, _admin: AdminUser) -> Response:
    return render(request, "admin/users_new.html", {"values": NewUserForm(), "errors": {}})


@router.post("", dependencies=[CsrfProtected])
def create_user(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    admin: AdminUser,
    form: Annotated[NewUserForm, Form()],
) -> Response:
    """Create a user from "new user"; a refusal shows the form again, as typed, with why."""
    try:
        user = users.create_user(
            session=db,
            **form.model_dump(exclude={"password"}),
            # None: the user is invited to choose their own.
            password=None if form.invites else form.password,
            actor=admin,
        )
    except UserInputError as error:
        return render(
            request,
            "admin/users_new.html",
            {"values": form, "errors": error.errors},
            status_code=400,
        )
    if form.invites:
        password_links.send_invitation(
            session=db,
            user=user,
            settings=settings,
            base_url=portal_base_url(request, settings),
            actor=admin,
        )
        message = _(
            "User %(email)s created. An invitation to choose a password is on its way to them.",
            email=user.email,
        )
    else:
        message = _("User %(email)s created.", email=user.email)
    db.commit()
    return flash_redirect(request, f"/admin/users/{user.id}", message)


def _edit_page(
    request: Request,
    db: DbSession,
    user: User,
    *,
    settings: Settings,
    values: UserForm | None = None,
    errors: dict[str, str] | None = None,
    rls_unchecked: bool = False,
) -> Response:
    """``rls_unchecked``: the RLS check could not run; the form offers to save without it."""
    return render_form(
        request,
        "admin/users_edit.html",
        {
            "user": user,
            "values": values if values is not None else UserForm.of(user),
            "errors": errors or {},
            "groups": groups_of(session=db, user=user),
            "user_access": access_of(session=db, user=user),
            "role_choices": roles_in_use_for_user(session=db, user=user),
            "rls_unchecked": rls_unchecked,
            "two_step_enabled": two_step.is_enabled(session=db, user_id=user.id),
            "lockout": lockouts(
                session=db, settings=settings, now=utcnow(), user_ids=[user.id]
            ).get(user.id),
            "now": utcnow(),
            "zone": organization_zone(session=db),
        },
        refused=bool(errors),
    )


@router.get("/{user_id}")
def edit_user_page(
    request: Request, db: DbSession, settings: AppSettings, _admin: AdminUser, user_id: UserId
) -> Response:
    return _edit_page(request, db, _user_or_404(db, user_id), settings=settings)


@router.post("/{user_id}", dependencies=[CsrfProtected])
def update_user(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    admin: AdminUser,
    clients: PowerBIClientsDep,
    hub: PushHubDep,
    user_id: UserId,
    form: Annotated[UserEditForm, Form()],
) -> Response:
    user = _user_or_404(db, user_id)
    refused = _rls_refused(db, settings, clients, user, form)
    if refused is not None:
        return _edit_page(
            request,
            db,
            user,
            settings=settings,
            values=form,
            errors={"rls_roles": refused.reason},
            rls_unchecked=refused.unchecked,
        )
    try:
        changes = users.update_user(session=db, user=user, **form.fields(), actor=admin)
    except UserInputError as error:
        return _edit_page(
            request,
            db,
            user,
            settings=settings,
            values=form,
            errors=error.errors,
        )
    db.commit()
    if ACCESS_FIELDS.intersection(changes):
        notify_access_changed(hub, [user.id])
    message = _("Changes saved.") if changes else _("Nothing was changed.")
    return flash_redirect(request, f"/admin/users/{user.id}", message)


def _rls_refused(
    db: DbSession, settings: Settings, clients: PowerBIClients, user: User, form: UserEditForm
) -> RolesRefused | None:
    """Changed RLS settings are tried on the user's RLS reports (access/rls_check.py) before
    they are saved. Values the service will refuse anyway are left to it."""
    try:
        username = users.normalise_rls_username(form.rls_username)
        roles = users.parse_rls_roles(form.rls_roles)
    except UserInputError:
        return None
    if (username, roles) == (user.rls_username, list(user.rls_roles or [])):
        return None
    trials = user_trials(session=db, user=user, rls_username=username, rls_roles=roles)
    return roles_refused(
        session=db,
        settings=settings,
        clients=clients,
        trials=trials,
        save_unchecked=form.save_unchecked,
    )


@router.post("/{user_id}/password", dependencies=[CsrfProtected])
def set_user_password(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    admin: AdminUser,
    user_id: UserId,
    form: Annotated[PasswordForm, Form()],
) -> Response:
    user = _user_or_404(db, user_id)
    try:
        users.set_password(
            session=db,
            user=user,
            password=form.password,
            actor=admin,
            default_language=settings.default_language,
        )
    except UserInputError as error:
        # Keyed apart from the user form's fields, which share the page's `errors`.
        return _edit_page(
            request,
            db,
            user,
            settings=settings,
            errors={"new_password": next(iter(error.errors.values()))},
        )
    db.commit()
    return flash_redirect(
        request,
        f"/admin/users/{user.id}",
        _("The password of %(email)s is set. They are signed out everywhere.", email=user.email),
    )


@router.post("/{user_id}/reset-link", dependencies=[CsrfProtected])
def send_reset_link(
    request: Request, db: DbSession, settings: AppSettings, admin: AdminUser, user_id: UserId
) -> Response:
    """Mail the user a link to set a new password, or, if they never chose one, a new
    invitation; earlier links stop working."""
    user = _user_or_404(db, user_id)
    send = (
        password_links.send_reset_link
        if has_password(user.password_hash)
        else (password_links.send_invitation)
    )
    send(
        session=db,
        user=user,
        settings=settings,
        base_url=portal_base_url(request, settings),
        actor=admin,
    )
    db.commit()
    return flash_redirect(
        request,
        f"/admin/users/{user.id}",
        _("A link to set a password is on its way to %(email)s.", email=user.email),
    )


def _set_blocked(
    request: Request,
    db: DbSession,
    settings: Settings,
    hub: PushHub,
    admin: User,
    user_id: int,
    blocked: bool,
) -> Response:
    user = _user_or_404(db, user_id)
    try:
        users.set_blocked(session=db, user=user, blocked=blocked, actor=admin)
    except UserInputError as error:
        return _edit_page(request, db, user, settings=settings, errors=error.errors)
    db.commit()
    if blocked:
        # Their sessions are ended: the re-check gets 401, and the viewer shows access removed.
        notify_access_changed(hub, [user.id])
        message = _("%(email)s is blocked and signed out everywhere.", email=user.email)
    else:
        message = _("%(email)s is unblocked and can sign in again.", email=user.email)
    return flash_redirect(request, f"/admin/users/{user.id}", message)


def _add_block_route(path: str, *, blocked: bool) -> None:
    """Block and unblock are one change with two answers: one route each, one body."""

    def change(
        request: Request,
        db: DbSession,
        settings: AppSettings,
        admin: AdminUser,
        hub: PushHubDep,
        user_id: UserId,
    ) -> Response:
        return _set_blocked(request, db, settings, hub, admin, user_id, blocked=blocked)

    router.add_api_route(
        f"/{{user_id}}/{path}",
        change,
        methods=["POST"],
        name=f"{path}_user",
        dependencies=[CsrfProtected],
    )


_add_block_route("block", blocked=True)
_add_block_route("unblock", blocked=False)


@router.post("/{user_id}/unlock", dependencies=[CsrfProtected])
def unlock_user(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    admin: AdminUser,
    htmx: IsHtmx,
    user_id: UserId,
    form: Annotated[UnlockForm, Form()],
) -> Response:
    """End the user's sign-in waits from every address; from the list, htmx swaps the list."""
    user = _user_or_404(db, user_id)
    ended = users.unlock_user(session=db, user=user, actor=admin)
    db.commit()
    if ended:
        message = _("%(email)s can sign in again from anywhere.", email=user.email)
    else:
        message = _("%(email)s was not locked.", email=user.email)
    if htmx:
        shown = UserListQuery(q=form.q, page=form.page_number, locked=form.locked)
        context = _list_context(db, settings, shown, message=message)
        return render(request, "admin/_users_table.html", context)
    return flash_redirect(request, f"/admin/users/{user.id}", message)


@router.post("/{user_id}/two-step/reset", dependencies=[CsrfProtected])
def reset_two_step(request: Request, db: DbSession, admin: AdminUser, user_id: UserId) -> Response:
    """Remove the user's two-step sign-in (a lost phone): their password alone signs them in,
    and they may set it up again (or are sent to, if the organization requires it)."""
    user = _user_or_404(db, user_id)
    removed = two_step.reset_two_step(session=db, user=user, actor=admin)
    db.commit()
    if removed:
        message = _("Two-step sign-in of %(email)s is reset.", email=user.email)
    else:
        message = _("%(email)s had no two-step sign-in.", email=user.email)
    return flash_redirect(request, f"/admin/users/{user.id}", message)


@router.get("/{user_id}/delete")
def confirm_delete_user_page(
    request: Request, db: DbSession, admin: AdminUser, user_id: UserId
) -> Response:
    user = _user_or_404(db, user_id)
    return render(
        request,
        "admin/users_delete.html",
        {"user": user, "errors": {}, "is_self": user.id == admin.id},
    )


@router.post("/{user_id}/delete", dependencies=[CsrfProtected])
def delete_user(
    request: Request, db: DbSession, admin: AdminUser, hub: PushHubDep, user_id: UserId
) -> Response:
    user = _user_or_404(db, user_id)
    email, deleted_id = user.email, user.id
    try:
        users.delete_user(session=db, user=user, actor=admin)
    except UserInputError as error:
        return render(
            request,
            "admin/users_delete.html",
            {"user": user, "errors": error.errors, "is_self": True},
            status_code=400,
        )
    db.commit()
    notify_access_changed(hub, [deleted_id])
    return flash_redirect(request, "/admin/users", _("User %(email)s deleted.", email=email))
