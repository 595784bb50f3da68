"""Administering groups: create, rename, describe, permissions, members, delete.

Whenever membership changes, the members' open viewers are told to ask for a token again: grants
and RLS roles come through groups.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import Response

from embedportal.access import groups
from embedportal.access.grants import reports_of_group
from embedportal.access.users import UserInputError, all_users
from embedportal.db.models import Group, User
from embedportal.i18n import N_, _
from embedportal.web.deps import (
    AdminUser,
    CsrfProtected,
    DbSession,
    IsHtmx,
    PushHubDep,
    stored_or_404,
)
from embedportal.web.forms import GroupForm, MemberForm
from embedportal.web.push import notify_access_changed
from embedportal.web.templating import flash_redirect, render, render_form

router = APIRouter(prefix="/admin/groups", tags=["admin"], include_in_schema=False)

GroupId = Annotated[int, Path(ge=1, le=2**31 - 1)]
UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def edited_group(group_id: GroupId, _admin: AdminUser, db: DbSession) -> Group:
    """The group the path names, for an administrator (checked first); else 404."""
    return stored_or_404(db.get(Group, group_id), N_("There is no such group."))


AdminGroup = Annotated[Group, Depends(edited_group)]


def _members_context(
    db: DbSession, group: Group, *, email: str = "", errors: dict[str, str] | None = None
) -> dict[str, Any]:
    members = groups.members_of(session=db, group=group)
    member_ids = {member.id for member in members}
    return {
        "group": group,
        "members": members,
        # Offered as suggestions while typing an e-mail to add.
        "candidates": [user for user in all_users(session=db) if user.id not in member_ids],
        "member_email": email,
        "member_errors": errors or {},
    }


def _members_changed(
    request: Request, db: DbSession, group: Group, *, htmx: bool, message: str
) -> Response:
    """htmx gets the refreshed member list saying ``message``; a plain form post gets 303 back
    to the group's page, which flashes it."""
    if htmx:
        context = _members_context(db, group)
        context["member_message"] = message
        return render(request, "admin/_group_members.html", context)
    return flash_redirect(request, f"/admin/groups/{group.id}", message)


@router.get("")
def groups_page(request: Request, db: DbSession, _admin: AdminUser) -> Response:
    return render(
        request,
        "admin/groups.html",
        {"groups": groups.list_groups(session=db), "values": GroupForm(), "errors": {}},
    )


@router.post("", dependencies=[CsrfProtected])
def create_group(
    request: Request, db: DbSession, admin: AdminUser, form: Annotated[GroupForm, Form()]
) -> Response:
    try:
        group = groups.create_group(session=db, **form.model_dump(), actor=admin)
    except UserInputError as error:
        return render(
            request,
            "admin/groups.html",
            {"groups": groups.list_groups(session=db), "values": form, "errors": error.errors},
            status_code=400,
        )
    db.commit()
    return flash_redirect(
        request,
        f"/admin/groups/{group.id}",
        _("Group “%(name)s” created. Add its members below.", name=group.name),
    )


def _edit_page(
    request: Request,
    db: DbSession,
    group: Group,
    *,
    values: GroupForm | None = None,
    errors: dict[str, str] | None = None,
    member_email: str = "",
    member_errors: dict[str, str] | None = None,
) -> Response:
    return render_form(
        request,
        "admin/groups_edit.html",
        {
            "values": values if values is not None else GroupForm.of(group),
            "errors": errors or {},
            **_members_context(db, group, email=member_email, errors=member_errors),
            "group_reports": reports_of_group(session=db, group=group),
        },
        refused=bool(errors or member_errors),
    )


@router.get("/{group_id}")
def edit_group_page(
    request: Request, db: DbSession, _admin: AdminUser, group: AdminGroup
) -> Response:
    return _edit_page(request, db, group)


@router.post("/{group_id}", dependencies=[CsrfProtected])
def update_group(
    request: Request,
    db: DbSession,
    admin: AdminUser,
    group: AdminGroup,
    form: Annotated[GroupForm, Form()],
) -> Response:
    try:
        changes = groups.update_group(session=db, group=group, **form.model_dump(), actor=admin)
    except UserInputError as error:
        return _edit_page(request, db, group, values=form, errors=error.errors)
    db.commit()
    message = _("Changes saved.") if changes else _("Nothing was changed.")
    return flash_redirect(request, f"/admin/groups/{group.id}", message)


@router.get("/{group_id}/members")
def members_partial(
    request: Request, db: DbSession, _admin: AdminUser, group: AdminGroup
) -> Response:
    """The member list alone: the htmx target of adding and removing members."""
    return render(request, "admin/_group_members.html", _members_context(db, group))


@router.post("/{group_id}/members", dependencies=[CsrfProtected])
def add_member(
    request: Request,
    db: DbSession,
    admin: AdminUser,
    hub: PushHubDep,
    htmx: IsHtmx,
    group: AdminGroup,
    form: Annotated[MemberForm, Form()],
) -> Response:
    try:
        user = groups.add_member(session=db, group=group, email=form.email, actor=admin)
    except UserInputError as error:
        if htmx:
            return render(
                request,
                "admin/_group_members.html",
                _members_context(db, group, email=form.email, errors=error.errors),
                status_code=400,
            )
        return _edit_page(
            request,
            db,
            group,
            member_email=form.email,
            member_errors=error.errors,
        )
    db.commit()
    # The group's grants may add RLS roles to the reports the user already sees.
    notify_access_changed(hub, [user.id])
    message = _("%(email)s is now a member.", email=user.email)
    return _members_changed(request, db, group, htmx=htmx, message=message)


@router.post("/{group_id}/members/{user_id}/remove", dependencies=[CsrfProtected])
def remove_member(
    request: Request,
    db: DbSession,
    admin: AdminUser,
    hub: PushHubDep,
    htmx: IsHtmx,
    group: AdminGroup,
    user_id: UserId,
) -> Response:
    user = stored_or_404(db.get(User, user_id), N_("There is no such user."))
    groups.remove_member(session=db, group=group, user=user, actor=admin)
    db.commit()
    notify_access_changed(hub, [user.id])
    message = _("%(email)s is no longer a member.", email=user.email)
    return _members_changed(request, db, group, htmx=htmx, message=message)


@router.get("/{group_id}/delete")
def confirm_delete_group_page(
    request: Request, db: DbSession, _admin: AdminUser, group: AdminGroup
) -> Response:
    return render(
        request,
        "admin/groups_delete.html",
        {"group": group, "member_count": groups.member_count(session=db, group=group)},
    )


@router.post("/{group_id}/delete", dependencies=[CsrfProtected])
def delete_group(
    request: Request, db: DbSession, admin: AdminUser, hub: PushHubDep, group: AdminGroup
) -> Response:
    name = group.name
    former_members = [member.id for member in groups.members_of(session=db, group=group)]
    groups.delete_group(session=db, group=group, actor=admin)
    db.commit()
    notify_access_changed(hub, former_members)
    return flash_redirect(request, "/admin/groups", _("Group “%(name)s” deleted.", name=name))
