"""Administering users: list and search, create, change, block, set a password, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Request
from fastapi.responses import Response

from embedportal.access.audit_log import organization_zone
from embedportal.access.groups import groups_of
from embedportal.access.users import (
    UserInputError,
    create_user,
    delete_user,
    list_users,
    set_blocked,
    set_password,
    update_user,
)
from embedportal.db.base import utcnow
from embedportal.db.models import Role, User
from embedportal.i18n import _
from embedportal.web.deps import AdminUser, CsrfProtected, DbSession
from embedportal.web.push import notify_access_changed
from embedportal.web.templating import flash_redirect, render

router = APIRouter(prefix="/admin/users", tags=["admin"], include_in_schema=False)

PAGE_SIZE = 50
MAX_PAGE = 1_000_000
TextField = Annotated[str, Form()]
# Ids beyond a 32-bit integer are refused as bad input, not passed to the database to overflow.
UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]
# Changes that alter what a user may open or the identity their embed tokens carry (the e-mail is
# the RLS username when none is set): their open viewers are told to ask for a token again.
ACCESS_FIELDS = frozenset({"email", "role", "rls_username", "rls_roles"})


def _access_changed(request: Request, user_id: int) -> None:
    notify_access_changed(request.app.state.push_hub, [user_id])


def _user_or_404(db: DbSession, user_id: int) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=_("There is no such user."))
    return user


def _values_of(user: User) -> dict[str, Any]:
    return {
        "email": user.email,
        "name": user.name,
        "role": user.role.value,
        "rls_username": user.rls_username or "",
        "rls_roles": ", ".join(user.rls_roles),
        "may_start_capacity": user.may_start_capacity,
        "keeps_capacity_on": user.keeps_capacity_on,
    }


def _list_context(db: DbSession, q: str, page: int) -> dict[str, Any]:
    page = min(max(page, 1), MAX_PAGE)
    result = list_users(session=db, search=q, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    return {
        "users": result.users,
        "total": result.total,
        "q": q,
        "page": page,
        "pages": max((result.total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        "now": utcnow(),
        "zone": organization_zone(session=db),
    }


@router.get("")
def users_page(
    request: Request, db: DbSession, _admin: AdminUser, q: str = "", page: int = 1
) -> Response:
    return render(request, "admin/users.html", _list_context(db, q, page))


@router.get("/rows")
def users_rows(
    request: Request, db: DbSession, _admin: AdminUser, q: str = "", page: int = 1
) -> Response:
    """The list alone: the htmx target of the search box."""
    return render(request, "admin/_users_table.html", _list_context(db, q, page))


@router.get("/new")
def new_user_page(request: Request, _admin: AdminUser) -> Response:
    return render(
        request, "admin/users_new.html", {"values": {"role": Role.VIEWER.value}, "errors": {}}
    )


@router.post("", dependencies=[CsrfProtected])
def create(
    request: Request,
    db: DbSession,
    admin: AdminUser,
    email: TextField = "",
    name: TextField = "",
    role: TextField = Role.VIEWER.value,
    password: TextField = "",
    rls_username: TextField = "",
    rls_roles: TextField = "",
    may_start_capacity: TextField = "",
    keeps_capacity_on: TextField = "",
) -> Response:
    try:
        user = create_user(
            session=db,
            email=email,
            password=password,
            name=name,
            role=role,
            rls_username=rls_username,
            rls_roles=rls_roles,
            may_start_capacity=bool(may_start_capacity),
            keeps_capacity_on=bool(keeps_capacity_on),
            actor=admin,
        )
    except UserInputError as error:
        values = {
            "email": email,
            "name": name,
            "role": role,
            "password": password,
            "rls_username": rls_username,
            "rls_roles": rls_roles,
            "may_start_capacity": bool(may_start_capacity),
            "keeps_capacity_on": bool(keeps_capacity_on),
        }
        return render(
            request,
            "admin/users_new.html",
            {"values": values, "errors": error.errors},
            status_code=400,
        )
    db.commit()
    return flash_redirect(
        request, f"/admin/users/{user.id}", _("User %(email)s created.", email=user.email)
    )


def _edit_page(
    request: Request,
    db: DbSession,
    user: User,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "admin/users_edit.html",
        {
            "user": user,
            "values": values if values is not None else _values_of(user),
            "errors": errors or {},
            "groups": groups_of(session=db, user=user),
            "now": utcnow(),
            "zone": organization_zone(session=db),
        },
        status_code=status_code,
    )


@router.get("/{user_id}")
def edit_user_page(request: Request, db: DbSession, _admin: AdminUser, user_id: UserId) -> Response:
    return _edit_page(request, db, _user_or_404(db, user_id))


@router.post("/{user_id}", dependencies=[CsrfProtected])
def update(
    request: Request,
    db: DbSession,
    admin: AdminUser,
    user_id: UserId,
    email: TextField = "",
    name: TextField = "",
    role: TextField = "",
    rls_username: TextField = "",
    rls_roles: TextField = "",
    may_start_capacity: TextField = "",
    keeps_capacity_on: TextField = "",
) -> Response:
    user = _user_or_404(db, user_id)
    try:
        changes = update_user(
            session=db,
            user=user,
            email=email,
            name=name,
            role=role,
            rls_username=rls_username,
            rls_roles=rls_roles,
            may_start_capacity=bool(may_start_capacity),
            keeps_capacity_on=bool(keeps_capacity_on),
            actor=admin,
        )
    except UserInputError as error:
        values = {
            "email": email,
            "name": name,
            "role": role,
            "rls_username": rls_username,
            "rls_roles": rls_roles,
            "may_start_capacity": bool(may_start_capacity),
            "keeps_capacity_on": bool(keeps_capacity_on),
        }
        return _edit_page(request, db, user, values=values, errors=error.errors, status_code=400)
    db.commit()
    if ACCESS_FIELDS.intersection(changes):
        _access_changed(request, user.id)
    message = _("Changes saved.") if changes else _("Nothing was changed.")
    return flash_redirect(request, f"/admin/users/{user.id}", message)


@router.post("/{user_id}/password", dependencies=[CsrfProtected])
def set_user_password(
    request: Request, db: DbSession, admin: AdminUser, user_id: UserId, password: TextField = ""
) -> Response:
    user = _user_or_404(db, user_id)
    try:
        set_password(session=db, user=user, password=password, actor=admin)
    except UserInputError as error:
        return _edit_page(
            request,
            db,
            user,
            errors={"new_password": next(iter(error.errors.values()))},
            status_code=400,
        )
    db.commit()
    return flash_redirect(
        request,
        f"/admin/users/{user.id}",
        _("The password of %(email)s is set. They are signed out everywhere.", email=user.email),
    )


def _set_blocked(
    request: Request, db: DbSession, admin: User, user_id: int, blocked: bool
) -> Response:
    user = _user_or_404(db, user_id)
    try:
        set_blocked(session=db, user=user, blocked=blocked, actor=admin)
    except UserInputError as error:
        return _edit_page(request, db, user, errors=error.errors, status_code=400)
    db.commit()
    if blocked:
        # Their sessions are ended: the re-check gets 401, and the viewer shows access removed.
        _access_changed(request, user.id)
        message = _("%(email)s is blocked and signed out everywhere.", email=user.email)
    else:
        message = _("%(email)s is unblocked and can sign in again.", email=user.email)
    return flash_redirect(request, f"/admin/users/{user.id}", message)


@router.post("/{user_id}/block", dependencies=[CsrfProtected])
def block(request: Request, db: DbSession, admin: AdminUser, user_id: UserId) -> Response:
    return _set_blocked(request, db, admin, user_id, blocked=True)


@router.post("/{user_id}/unblock", dependencies=[CsrfProtected])
def unblock(request: Request, db: DbSession, admin: AdminUser, user_id: UserId) -> Response:
    return _set_blocked(request, db, admin, user_id, blocked=False)


@router.get("/{user_id}/delete")
def confirm_delete_page(
    request: Request, db: DbSession, admin: AdminUser, user_id: UserId
) -> Response:
    user = _user_or_404(db, user_id)
    return render(
        request,
        "admin/users_delete.html",
        {"user": user, "errors": {}, "is_self": user.id == admin.id},
    )


@router.post("/{user_id}/delete", dependencies=[CsrfProtected])
def delete(request: Request, db: DbSession, admin: AdminUser, user_id: UserId) -> Response:
    user = _user_or_404(db, user_id)
    email, deleted_id = user.email, user.id
    try:
        delete_user(session=db, user=user, actor=admin)
    except UserInputError as error:
        return render(
            request,
            "admin/users_delete.html",
            {"user": user, "errors": error.errors, "is_self": True},
            status_code=400,
        )
    db.commit()
    _access_changed(request, deleted_id)
    return flash_redirect(request, "/admin/users", _("User %(email)s deleted.", email=email))
