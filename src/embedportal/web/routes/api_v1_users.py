"""`/api/v1/users`: an application manages the portal's users (docs/integration-api.md).

The same services as Admin → Users (access/users.py): the same rules, audit entries (naming the
key) and push events (blocking a user closes their open reports). Changing RLS settings needs
`rls:write` beside `users:write`, and is tried with Power BI first, as the admin form does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from embedportal.access import password_links, users
from embedportal.access.api_keys import ApiCaller
from embedportal.access.audit import through_api_key
from embedportal.access.rls_check import user_trials
from embedportal.access.users import UserInputError
from embedportal.db.models import User
from embedportal.i18n import _
from embedportal.web.api_auth import require_scope
from embedportal.web.api_v1 import (
    COMMON_ERRORS,
    MAX_ID,
    ApiError,
    ApiModel,
    PagingQuery,
    not_found,
    refused,
    require_also,
)
from embedportal.web.deps import AppSettings, DbSession, PowerBIClientsDep, PushHubDep
from embedportal.web.links import portal_base_url
from embedportal.web.push import notify_access_changed
from embedportal.web.rls_checks import roles_refused
from embedportal.web.routes.admin_users import ACCESS_FIELDS

router = APIRouter(prefix="/api/v1/users", tags=["integration: users"], responses=COMMON_ERRORS)

UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
UsersRead = Annotated[ApiCaller, require_scope("users:read")]
UsersWrite = Annotated[ApiCaller, require_scope("users:write")]
RLS_FIELDS = frozenset({"rls_username", "rls_roles"})


class UserOut(BaseModel):
    id: int = Field(examples=[42])
    email: str = Field(examples=["ana@example.com"])
    name: str = Field(examples=["Ana Souza"])
    role: str = Field(examples=["viewer"])
    language: str | None = Field(examples=["pt_BR"])
    blocked: bool = Field(examples=[False])
    rls_username: str | None = Field(
        description="Sent to Power BI for row-level security; null: the e-mail.",
        examples=[None],
    )
    rls_roles: list[str] = Field(examples=[["North"]])
    may_start_capacity: bool
    keeps_capacity_on: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role.value,
            language=user.language,
            blocked=user.is_blocked,
            rls_username=user.rls_username,
            rls_roles=list(user.rls_roles or []),
            may_start_capacity=user.may_start_capacity,
            keeps_capacity_on=user.keeps_capacity_on,
            created_at=user.created_at,
            last_login_at=user.last_login_at,
        )


class UserList(BaseModel):
    items: list[UserOut]
    total: int = Field(description="Users matching the filters, on every page.")
    page: int
    per_page: int


class UserCreate(ApiModel):
    email: str = Field(max_length=320, examples=["ana@example.com"])
    name: str = Field("", max_length=200, examples=["Ana Souza"])
    role: str = Field("viewer", max_length=20, examples=["viewer"])
    language: str | None = Field(None, max_length=10, examples=["pt_BR"])
    rls_username: str | None = Field(None, max_length=300, examples=["ana.souza"])
    rls_roles: list[str] = Field(default_factory=list, max_length=60, examples=[["North"]])
    may_start_capacity: bool = False
    keeps_capacity_on: bool = False
    invite: bool = Field(False, description="Mail the user an invitation to choose their password.")

    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"email": "ana@example.com", "name": "Ana Souza"}]},
    }


class UserUpdate(ApiModel):
    """Only the fields sent are changed."""

    email: str | None = Field(None, max_length=320)
    name: str | None = Field(None, max_length=200)
    role: str | None = Field(None, max_length=20, examples=["admin"])
    language: str | None = Field(None, max_length=10, description="null: follow the browser.")
    rls_username: str | None = Field(None, max_length=300)
    rls_roles: list[str] | None = Field(None, max_length=60, examples=[["North", "South"]])
    may_start_capacity: bool | None = None
    keeps_capacity_on: bool | None = None
    save_unchecked: bool = Field(
        False,
        description="Save RLS settings even when Power BI cannot be asked to try them "
        "(a refusal by Power BI is never saved).",
    )

    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"name": "Ana Souza", "rls_roles": ["North"]}]},
    }


def _user_or_404(db: DbSession, user_id: int) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise not_found(_("There is no such user."))
    return user


def _language(db: DbSession, user: User, language: str | None) -> None:
    try:
        users.set_language(session=db, user=user, language=language)
    except UserInputError as error:
        raise refused(error) from None


@router.get("", response_model=UserList)
def list_users(
    db: DbSession,
    _caller: UsersRead,
    paging: PagingQuery,
    q: Annotated[str, Query(max_length=200, description="Part of the e-mail or name.")] = "",
    blocked: Annotated[bool | None, Query(description="Only blocked (or unblocked) users.")] = None,
) -> UserList:
    """Users by e-mail, a page at a time."""
    result = users.list_users(
        session=db, search=q, offset=paging.offset, limit=paging.per_page, blocked=blocked
    )
    return UserList(
        items=[UserOut.of(user) for user in result.users],
        total=result.total,
        page=paging.page,
        per_page=paging.per_page,
    )


@router.get("/{user_id}", response_model=UserOut)
def get_user(db: DbSession, _caller: UsersRead, user_id: UserId) -> UserOut:
    return UserOut.of(_user_or_404(db, user_id))


@router.post(
    "",
    response_model=UserOut,
    status_code=201,
    responses={200: {"model": UserOut, "description": "A user with this e-mail already exists"}},
)
def create_user(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    caller: UsersWrite,
    body: UserCreate,
) -> Response:
    """Create a user; idempotent by e-mail: the same e-mail again answers 200 with the user
    that has it, unchanged."""
    if body.rls_username or body.rls_roles:
        require_also(caller, "rls:write")
    try:
        normalised = users.normalise_email(body.email)
    except UserInputError as error:
        raise refused(error) from None
    existing = users.find_user_by_email(session=db, email=normalised)
    if existing is not None:
        return _answer(existing, status=200)
    with through_api_key(caller.name):
        try:
            user = users.create_user(
                session=db,
                **body.model_dump(exclude={"language", "invite"}),
                password=None,
                actor=None,
            )
        except UserInputError as error:
            raise refused(error) from None
        if body.language is not None:
            _language(db, user, body.language)
        if body.invite:
            password_links.send_invitation(
                session=db,
                user=user,
                settings=settings,
                base_url=portal_base_url(request, settings),
                actor=None,
            )
    db.commit()
    return _answer(user, status=201)


def _answer(user: User, *, status: int) -> JSONResponse:
    return JSONResponse(UserOut.of(user).model_dump(mode="json"), status_code=status)


@router.patch("/{user_id}", response_model=UserOut)
def update_user(
    db: DbSession,
    settings: AppSettings,
    clients: PowerBIClientsDep,
    hub: PushHubDep,
    caller: UsersWrite,
    user_id: UserId,
    body: UserUpdate,
) -> UserOut:
    """Change the fields sent. New RLS settings are tried with Power BI on the user's RLS
    reports before they are saved (400 `RlsRolesRefused`, or `RlsCheckUnavailable` when Power
    BI cannot be asked: send `save_unchecked` to save anyway)."""
    user = _user_or_404(db, user_id)
    sent = body.model_fields_set - {"save_unchecked"}
    if sent & RLS_FIELDS:
        require_also(caller, "rls:write")
    current: dict[str, Any] = {
        "email": user.email,
        "name": user.name,
        "role": user.role.value,
        "rls_username": user.rls_username,
        "rls_roles": list(user.rls_roles or []),
        "may_start_capacity": user.may_start_capacity,
        "keeps_capacity_on": user.keeps_capacity_on,
    }
    for field in sent - {"language"}:
        value = getattr(body, field)
        if value is not None or field == "rls_username":
            current[field] = value
    _check_rls(db, settings, clients, user, current, save_unchecked=body.save_unchecked)
    with through_api_key(caller.name):
        try:
            changes = users.update_user(session=db, user=user, **current, actor=None)
        except UserInputError as error:
            raise refused(error) from None
        if "language" in sent:
            _language(db, user, body.language)
    db.commit()
    if ACCESS_FIELDS.intersection(changes):
        notify_access_changed(hub, [user.id])
    return UserOut.of(user)


def _check_rls(
    db: DbSession,
    settings: AppSettings,
    clients: PowerBIClientsDep,
    user: User,
    wanted: dict[str, Any],
    *,
    save_unchecked: bool,
) -> None:
    try:
        username = users.normalise_rls_username(wanted["rls_username"])
        roles = users.parse_rls_roles(wanted["rls_roles"])
    except UserInputError:
        return  # the service refuses it, with the reason
    if (username, roles) == (user.rls_username, list(user.rls_roles or [])):
        return
    trials = user_trials(session=db, user=user, rls_username=username, rls_roles=roles)
    refusal = roles_refused(
        session=db, settings=settings, clients=clients, trials=trials, save_unchecked=save_unchecked
    )
    if refusal is not None:
        code = "RlsCheckUnavailable" if refusal.unchecked else "RlsRolesRefused"
        raise ApiError(400, code, refusal.reason)


def _set_blocked(
    db: DbSession, hub: PushHubDep, caller: ApiCaller, user_id: int, *, blocked: bool
) -> UserOut:
    user = _user_or_404(db, user_id)
    with through_api_key(caller.name):
        try:
            users.set_blocked(session=db, user=user, blocked=blocked, actor=None)
        except UserInputError as error:
            raise refused(error) from None
    db.commit()
    if blocked:
        # Their sessions are ended: their open viewers are told, and show access removed.
        notify_access_changed(hub, [user.id])
    return UserOut.of(user)


@router.post("/{user_id}/block", response_model=UserOut)
def block_user(db: DbSession, hub: PushHubDep, caller: UsersWrite, user_id: UserId) -> UserOut:
    """Block the user: signed out everywhere, their open reports closed, sign-in refused."""
    return _set_blocked(db, hub, caller, user_id, blocked=True)


@router.post("/{user_id}/unblock", response_model=UserOut)
def unblock_user(db: DbSession, hub: PushHubDep, caller: UsersWrite, user_id: UserId) -> UserOut:
    return _set_blocked(db, hub, caller, user_id, blocked=False)


@router.delete("/{user_id}", status_code=204, response_class=Response)
def delete_user(db: DbSession, hub: PushHubDep, caller: UsersWrite, user_id: UserId) -> Response:
    """Delete the user, their sessions, memberships and grants (the audit keeps the e-mail)."""
    user = _user_or_404(db, user_id)
    deleted_id = user.id
    with through_api_key(caller.name):
        try:
            users.delete_user(session=db, user=user, actor=None)
        except UserInputError as error:
            raise refused(error) from None
    db.commit()
    notify_access_changed(hub, [deleted_id])
    return Response(status_code=204)
