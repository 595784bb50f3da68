"""`/api/v1/groups`: groups and their members (docs/integration-api.md), through the services
Admin → Groups uses (access/groups.py); members whose access changes are told at once."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, model_validator

from embedportal.access import groups
from embedportal.access.api_keys import ApiCaller
from embedportal.access.audit import through_api_key
from embedportal.access.users import UserInputError
from embedportal.db.models import Group, User
from embedportal.i18n import _
from embedportal.web.api_auth import require_scope
from embedportal.web.api_v1 import COMMON_ERRORS, MAX_ID, ApiModel, not_found, refused
from embedportal.web.deps import DbSession, PushHubDep
from embedportal.web.push import notify_access_changed

router = APIRouter(prefix="/api/v1/groups", tags=["integration: groups"], responses=COMMON_ERRORS)

GroupId = Annotated[int, Path(ge=1, le=MAX_ID)]
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
GroupsRead = Annotated[ApiCaller, require_scope("groups:read")]
GroupsWrite = Annotated[ApiCaller, require_scope("groups:write")]


class GroupOut(BaseModel):
    id: int = Field(examples=[7])
    name: str = Field(examples=["Customer Acme"])
    description: str = Field(examples=["Acme's people"])
    member_count: int = Field(examples=[12])
    may_start_capacity: bool
    keeps_capacity_on: bool
    created_at: datetime

    @classmethod
    def of(cls, group: Group, member_count: int) -> GroupOut:
        return cls(
            id=group.id,
            name=group.name,
            description=group.description,
            member_count=member_count,
            may_start_capacity=group.may_start_capacity,
            keeps_capacity_on=group.keeps_capacity_on,
            created_at=group.created_at,
        )


class GroupList(BaseModel):
    items: list[GroupOut]
    total: int


class GroupCreate(ApiModel):
    name: str = Field(max_length=300, examples=["Customer Acme"])
    description: str = Field("", max_length=3000)
    may_start_capacity: bool = False
    keeps_capacity_on: bool = False


class MemberOut(BaseModel):
    id: int = Field(examples=[42])
    email: str = Field(examples=["ana@example.com"])
    name: str = Field(examples=["Ana Souza"])

    @classmethod
    def of(cls, user: User) -> MemberOut:
        return cls(id=user.id, email=user.email, name=user.name)


class MemberList(BaseModel):
    items: list[MemberOut]
    total: int


class MemberAdd(ApiModel):
    """The user to add: by id or by e-mail (one of them)."""

    user_id: int | None = Field(None, ge=1, le=MAX_ID, examples=[42])
    email: str | None = Field(None, max_length=320, examples=["ana@example.com"])

    @model_validator(mode="after")
    def _one_of(self) -> MemberAdd:
        if (self.user_id is None) == (self.email is None):
            raise ValueError("give either user_id or email")
        return self


def _group_or_404(db: DbSession, group_id: int) -> Group:
    group = db.get(Group, group_id)
    if group is None:
        raise not_found(_("There is no such group."))
    return group


def _out(db: DbSession, group: Group) -> GroupOut:
    return GroupOut.of(group, groups.member_count(session=db, group=group))


@router.get("", response_model=GroupList)
def list_groups(db: DbSession, _caller: GroupsRead) -> GroupList:
    """Every group, by name."""
    summaries = groups.list_groups(session=db)
    return GroupList(
        items=[GroupOut.of(summary.group, summary.member_count) for summary in summaries],
        total=len(summaries),
    )


@router.get("/{group_id}", response_model=GroupOut)
def get_group(db: DbSession, _caller: GroupsRead, group_id: GroupId) -> GroupOut:
    return _out(db, _group_or_404(db, group_id))


@router.post(
    "",
    response_model=GroupOut,
    status_code=201,
    responses={200: {"model": GroupOut, "description": "A group with this name already exists"}},
)
def create_group(db: DbSession, caller: GroupsWrite, body: GroupCreate) -> Response:
    """Create a group; idempotent by name (any case): the same name again answers 200 with the
    group that has it, unchanged."""
    existing = groups.find_by_name(session=db, name=" ".join(body.name.split()))
    if existing is not None:
        return JSONResponse(_out(db, existing).model_dump(mode="json"), status_code=200)
    with through_api_key(caller.name):
        try:
            group = groups.create_group(session=db, **body.model_dump(), actor=None)
        except UserInputError as error:
            raise refused(error) from None
    db.commit()
    return JSONResponse(_out(db, group).model_dump(mode="json"), status_code=201)


@router.delete("/{group_id}", status_code=204, response_class=Response)
def delete_group(
    db: DbSession, hub: PushHubDep, caller: GroupsWrite, group_id: GroupId
) -> Response:
    """Delete the group: its members lose what they had through it."""
    group = _group_or_404(db, group_id)
    former_members = [member.id for member in groups.members_of(session=db, group=group)]
    with through_api_key(caller.name):
        groups.delete_group(session=db, group=group, actor=None)
    db.commit()
    notify_access_changed(hub, former_members)
    return Response(status_code=204)


@router.get("/{group_id}/members", response_model=MemberList)
def list_members(db: DbSession, _caller: GroupsRead, group_id: GroupId) -> MemberList:
    members = groups.members_of(session=db, group=_group_or_404(db, group_id))
    return MemberList(items=[MemberOut.of(user) for user in members], total=len(members))


@router.post("/{group_id}/members", response_model=MemberOut)
def add_member(
    db: DbSession, hub: PushHubDep, caller: GroupsWrite, group_id: GroupId, body: MemberAdd
) -> MemberOut:
    """Add a user to the group (adding a member again changes nothing)."""
    group = _group_or_404(db, group_id)
    email = body.email
    if body.user_id is not None:
        user = db.get(User, body.user_id)
        if user is None:
            raise not_found(_("There is no such user."))
        email = user.email
    assert email is not None
    with through_api_key(caller.name):
        try:
            member = groups.add_member(session=db, group=group, email=email, actor=None)
        except UserInputError as error:
            raise refused(error) from None
    db.commit()
    # The group's grants may add RLS roles to the reports the user already sees.
    notify_access_changed(hub, [member.id])
    return MemberOut.of(member)


@router.delete("/{group_id}/members/{user_id}", status_code=204, response_class=Response)
def remove_member(
    db: DbSession, hub: PushHubDep, caller: GroupsWrite, group_id: GroupId, user_id: UserId
) -> Response:
    """Remove a user from the group (one who is not a member: nothing changes)."""
    group = _group_or_404(db, group_id)
    user = db.get(User, user_id)
    if user is None:
        raise not_found(_("There is no such user."))
    with through_api_key(caller.name):
        groups.remove_member(session=db, group=group, user=user, actor=None)
    db.commit()
    notify_access_changed(hub, [user.id])
    return Response(status_code=204)
