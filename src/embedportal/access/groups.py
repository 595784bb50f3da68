"""Groups of users: membership, and the capacity permissions members get from them.

Permissions are additive: a user has a permission when the user has it or any of their groups
has it. Nothing a group says can take a permission away.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from embedportal.access.audit import apply_changes, record
from embedportal.access.users import UserInputError, find_user_by_email, normalise_email
from embedportal.db.models import Group, GroupMembership, User
from embedportal.i18n import _

MAX_GROUP_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 2000


@dataclass(frozen=True)
class EffectivePermissions:
    """What a user may do with the capacity, from the user's own flags and all their groups."""

    may_start_capacity: bool
    keeps_capacity_on: bool


@dataclass(frozen=True)
class GroupSummary:
    group: Group
    member_count: int


def effective_permissions(*, session: Session, user: User) -> EffectivePermissions:
    if user.is_blocked:
        return EffectivePermissions(may_start_capacity=False, keeps_capacity_on=False)
    may_start = user.may_start_capacity
    keeps_on = user.keeps_capacity_on
    if not (may_start and keeps_on):
        rows = session.execute(
            select(Group.may_start_capacity, Group.keeps_capacity_on)
            .join(GroupMembership, GroupMembership.group_id == Group.id)
            .where(GroupMembership.user_id == user.id)
        )
        for group_may_start, group_keeps_on in rows:
            may_start = may_start or group_may_start
            keeps_on = keeps_on or group_keeps_on
    return EffectivePermissions(may_start_capacity=may_start, keeps_capacity_on=keeps_on)


def _audit(
    *, session: Session, actor: User | None, action: str, group: Group, **detail: object
) -> None:
    """An entry about ``group`` that names it, so the trail still reads after a rename or
    deletion."""
    record(
        session=session,
        actor=actor,
        action=action,
        target_type="group",
        target_id=str(group.id),
        detail={"name": group.name, **detail},
    )


def find_by_name(*, session: Session, name: str) -> Group | None:
    """The group called ``name``, in any case. The exact name too: SQLite's lower() leaves
    letters beyond ASCII ("Ç") as they are, where Python's lowers them."""
    return session.scalar(
        select(Group)
        .where(or_(Group.name == name, func.lower(Group.name) == name.lower()))
        .order_by(Group.id)
        .limit(1)
    )


def _check(
    *, session: Session, name: str, description: str, group: Group | None
) -> tuple[str, str]:
    errors: dict[str, str] = {}
    clean_name = " ".join(name.split())
    if not clean_name:
        errors["name"] = _("Give the group a name.")
    elif len(clean_name) > MAX_GROUP_NAME_LENGTH:
        errors["name"] = _(
            "The name must have at most %(count)d characters.", count=MAX_GROUP_NAME_LENGTH
        )
    else:
        existing = find_by_name(session=session, name=clean_name)
        if existing is not None and (group is None or existing.id != group.id):
            errors["name"] = _("A group called “%(name)s” already exists.", name=clean_name)
    clean_description = description.strip()
    if len(clean_description) > MAX_DESCRIPTION_LENGTH:
        errors["description"] = _(
            "The description must have at most %(count)d characters.",
            count=MAX_DESCRIPTION_LENGTH,
        )
    if errors:
        raise UserInputError(errors=errors)
    return clean_name, clean_description


def create_group(
    *,
    session: Session,
    name: str,
    description: str = "",
    may_start_capacity: bool = False,
    keeps_capacity_on: bool = False,
    actor: User | None,
) -> Group:
    clean_name, clean_description = _check(
        session=session, name=name, description=description, group=None
    )
    group = Group(
        name=clean_name,
        description=clean_description,
        may_start_capacity=may_start_capacity,
        keeps_capacity_on=keeps_capacity_on,
    )
    session.add(group)
    session.flush()
    _audit(
        session=session,
        actor=actor,
        action="group.created",
        group=group,
        may_start_capacity=may_start_capacity,
        keeps_capacity_on=keeps_capacity_on,
    )
    return group


def update_group(
    *,
    session: Session,
    group: Group,
    name: str,
    description: str,
    may_start_capacity: bool,
    keeps_capacity_on: bool,
    actor: User | None,
) -> dict[str, list[object]]:
    """Rename a group or change its description and permissions; returns what changed."""
    clean_name, clean_description = _check(
        session=session, name=name, description=description, group=group
    )
    wanted: dict[str, object] = {
        "name": clean_name,
        "description": clean_description,
        "may_start_capacity": may_start_capacity,
        "keeps_capacity_on": keeps_capacity_on,
    }
    changes = apply_changes(group, wanted)
    if changes:
        session.flush()
        _audit(session=session, actor=actor, action="group.updated", group=group, changes=changes)
    return changes


def delete_group(*, session: Session, group: Group, actor: User | None) -> None:
    """Delete a group; its members lose what they had through it (memberships, grants)."""
    members = member_count(session=session, group=group)
    _audit(session=session, actor=actor, action="group.deleted", group=group, members=members)
    session.delete(group)
    session.flush()


def add_member(*, session: Session, group: Group, email: str, actor: User | None) -> User:
    """Add the user with this e-mail to the group (adding a member twice is not an error)."""
    normalised = normalise_email(email)
    user = find_user_by_email(session=session, email=normalised)
    if user is None:
        raise UserInputError(
            _("There is no user with the e-mail %(email)s.", email=normalised), field="email"
        )
    if session.get(GroupMembership, (group.id, user.id)) is None:
        session.add(GroupMembership(group_id=group.id, user_id=user.id))
        session.flush()
        _audit(
            session=session,
            actor=actor,
            action="group.member_added",
            group=group,
            email=user.email,
            user_id=user.id,
        )
    return user


def remove_member(*, session: Session, group: Group, user: User, actor: User | None) -> None:
    membership = session.get(GroupMembership, (group.id, user.id))
    if membership is None:
        return
    session.delete(membership)
    session.flush()
    _audit(
        session=session,
        actor=actor,
        action="group.member_removed",
        group=group,
        email=user.email,
        user_id=user.id,
    )


def member_count(*, session: Session, group: Group) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(GroupMembership)
            .where(GroupMembership.group_id == group.id)
        )
        or 0
    )


def members_of(*, session: Session, group: Group) -> list[User]:
    return list(
        session.scalars(
            select(User)
            .join(GroupMembership, GroupMembership.user_id == User.id)
            .where(GroupMembership.group_id == group.id)
            .order_by(User.email)
        )
    )


def groups_of(*, session: Session, user: User) -> list[Group]:
    return list(
        session.scalars(
            select(Group)
            .join(GroupMembership, GroupMembership.group_id == Group.id)
            .where(GroupMembership.user_id == user.id)
            .order_by(Group.name)
        )
    )


def list_groups(*, session: Session) -> list[GroupSummary]:
    counts = (
        select(GroupMembership.group_id, func.count().label("members"))
        .group_by(GroupMembership.group_id)
        .subquery()
    )
    rows = session.execute(
        select(Group, func.coalesce(counts.c.members, 0))
        .outerjoin(counts, counts.c.group_id == Group.id)
        .order_by(func.lower(Group.name))
    )
    return [GroupSummary(group=group, member_count=int(count)) for group, count in rows]
