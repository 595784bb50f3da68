"""Who may turn the capacity on, and whose open reports keep it on: a pure precedence rule.

The inputs are what the database already holds (a user's own two checkboxes, each of their
groups' two checkboxes, the role, the blocked flag) and the organization's global block
"Nobody may turn on a capacity". The caller reads them; nothing here does I/O.

Precedence, strongest first (the first rule that applies decides, and says so in ``because``):

Turning on **on demand** (opening a report of a paused capacity starts it):

1. a blocked user may not (a blocked account cannot use the portal at all);
2. the global block "Nobody may turn on a capacity" refuses everyone, administrators included:
   it is the organization's "keep the bill at zero" switch and must mean what it says;
3. an administrator may: they can press the manual "Turn on" button anyway, so refusing them
   the on-demand path would only add a click;
4. the user's own "May turn on the capacity";
5. any of their groups' "May turn on the capacity" (permissions add up; a group never takes
   one away);
6. otherwise not.

Turning on or off **by hand** (the capacity page's buttons) is an administrator's act and is
*not* subject to the global block: the block stops the portal from starting a capacity by itself
on someone's behalf, not an administrator who decides, deliberately, to start it. A blocked
administrator may not.

**Keeps the capacity on** (an idle open report, a heartbeat or a timed token refresh counts as
activity): only the user's own flag or a group's. Being an administrator does not imply it (an
administrator's forgotten tab should not keep the bill running), and the global block does not
touch it (it is about starting, not about what counts as use). A blocked user does not.

Groups count as given: to honour Power Embedded's rule that a group's permission applies only to
that group's reports, pass only the groups that grant the report being opened.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class CapacityFlags:
    """The two checkboxes of one user or one group."""

    may_turn_on: bool = False
    keeps_on: bool = False


class Because(enum.StrEnum):
    """Why a permission was given or refused: shown to admins ("why can't she start it?")."""

    BLOCKED_USER = "blocked_user"
    GLOBAL_BLOCK = "global_block"
    ADMINISTRATOR = "administrator"
    USER_PERMISSION = "user_permission"
    GROUP_PERMISSION = "group_permission"
    NOT_GRANTED = "not_granted"
    NOT_ADMINISTRATOR = "not_administrator"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    because: Because


@dataclass(frozen=True)
class CapacityPermissions:
    """Everything the capacity controller and the viewer need to know about one person."""

    turn_on_on_demand: Verdict
    keeps_on: Verdict
    turn_on_or_off_by_hand: Verdict


def capacity_permissions(
    *,
    own: CapacityFlags,
    groups: Iterable[CapacityFlags],
    is_admin: bool,
    is_blocked: bool,
    nobody_may_turn_on: bool,
) -> CapacityPermissions:
    """Apply the precedence of this module's docstring."""
    group_flags = tuple(groups)
    return CapacityPermissions(
        turn_on_on_demand=_on_demand(
            own=own,
            groups=group_flags,
            is_admin=is_admin,
            is_blocked=is_blocked,
            nobody_may_turn_on=nobody_may_turn_on,
        ),
        keeps_on=_keeps_on(own=own, groups=group_flags, is_blocked=is_blocked),
        turn_on_or_off_by_hand=_by_hand(is_admin=is_admin, is_blocked=is_blocked),
    )


def _on_demand(
    *,
    own: CapacityFlags,
    groups: tuple[CapacityFlags, ...],
    is_admin: bool,
    is_blocked: bool,
    nobody_may_turn_on: bool,
) -> Verdict:
    if is_blocked:
        return Verdict(allowed=False, because=Because.BLOCKED_USER)
    if nobody_may_turn_on:
        return Verdict(allowed=False, because=Because.GLOBAL_BLOCK)
    if is_admin:
        return Verdict(allowed=True, because=Because.ADMINISTRATOR)
    return _granted(own.may_turn_on, any(group.may_turn_on for group in groups))


def _keeps_on(
    *, own: CapacityFlags, groups: tuple[CapacityFlags, ...], is_blocked: bool
) -> Verdict:
    if is_blocked:
        return Verdict(allowed=False, because=Because.BLOCKED_USER)
    return _granted(own.keeps_on, any(group.keeps_on for group in groups))


def _granted(by_user: bool, by_a_group: bool) -> Verdict:
    """The checkboxes' say, once no stronger rule has decided: the user's own first."""
    if by_user:
        return Verdict(allowed=True, because=Because.USER_PERMISSION)
    if by_a_group:
        return Verdict(allowed=True, because=Because.GROUP_PERMISSION)
    return Verdict(allowed=False, because=Because.NOT_GRANTED)


def _by_hand(*, is_admin: bool, is_blocked: bool) -> Verdict:
    if is_blocked:
        return Verdict(allowed=False, because=Because.BLOCKED_USER)
    if is_admin:
        return Verdict(allowed=True, because=Because.ADMINISTRATOR)
    return Verdict(allowed=False, because=Because.NOT_ADMINISTRATOR)
