"""What a person may do with the capacities, read from the database: their own and their groups'
"May turn on the capacity" and "Keeps the capacity on", their role, and the organization's global
block. The precedence itself is the pure capacity.permissions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access.organization import get_organization
from embedportal.capacity.permissions import (
    CapacityFlags,
    CapacityPermissions,
    capacity_permissions,
)
from embedportal.db.models import Group, GroupMembership, Role, User


def capacity_rights(*, session: Session, user: User) -> CapacityPermissions:
    groups = [
        CapacityFlags(may_turn_on=may_turn_on, keeps_on=keeps_on)
        for may_turn_on, keeps_on in session.execute(
            select(Group.may_start_capacity, Group.keeps_capacity_on)
            .join(GroupMembership, GroupMembership.group_id == Group.id)
            .where(GroupMembership.user_id == user.id)
        )
    ]
    return capacity_permissions(
        own=CapacityFlags(may_turn_on=user.may_start_capacity, keeps_on=user.keeps_capacity_on),
        groups=groups,
        is_admin=user.role is Role.ADMIN,
        is_blocked=user.is_blocked,
        nobody_may_turn_on=get_organization(session=session).nobody_may_start_capacity,
    )
