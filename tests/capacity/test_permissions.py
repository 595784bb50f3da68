"""Who may turn the capacity on, and whose open reports keep it on: the precedence table."""

from __future__ import annotations

import itertools
from dataclasses import FrozenInstanceError

import pytest

from embedportal.capacity.permissions import (
    Because,
    CapacityFlags,
    CapacityPermissions,
    Verdict,
    capacity_permissions,
)

NONE = CapacityFlags()
TURN_ON = CapacityFlags(may_turn_on=True)
KEEPS_ON = CapacityFlags(keeps_on=True)
BOTH = CapacityFlags(may_turn_on=True, keeps_on=True)


def permissions(
    *,
    own: CapacityFlags = NONE,
    groups: tuple[CapacityFlags, ...] = (),
    is_admin: bool = False,
    is_blocked: bool = False,
    nobody_may_turn_on: bool = False,
) -> CapacityPermissions:
    return capacity_permissions(
        own=own,
        groups=groups,
        is_admin=is_admin,
        is_blocked=is_blocked,
        nobody_may_turn_on=nobody_may_turn_on,
    )


# (description, inputs, on-demand verdict, keeps-on verdict, by-hand verdict)
CASES: list[tuple[str, dict[str, object], Verdict, Verdict, Verdict]] = [
    (
        "nobody special",
        {},
        Verdict(False, Because.NOT_GRANTED),
        Verdict(False, Because.NOT_GRANTED),
        Verdict(False, Because.NOT_ADMINISTRATOR),
    ),
    (
        "the user's own turn-on",
        {"own": TURN_ON},
        Verdict(True, Because.USER_PERMISSION),
        Verdict(False, Because.NOT_GRANTED),
        Verdict(False, Because.NOT_ADMINISTRATOR),
    ),
    (
        "the user's own keeps-on",
        {"own": KEEPS_ON},
        Verdict(False, Because.NOT_GRANTED),
        Verdict(True, Because.USER_PERMISSION),
        Verdict(False, Because.NOT_ADMINISTRATOR),
    ),
    (
        "a group's turn-on",
        {"groups": (NONE, TURN_ON)},
        Verdict(True, Because.GROUP_PERMISSION),
        Verdict(False, Because.NOT_GRANTED),
        Verdict(False, Because.NOT_ADMINISTRATOR),
    ),
    (
        "a group's keeps-on",
        {"groups": (KEEPS_ON,)},
        Verdict(False, Because.NOT_GRANTED),
        Verdict(True, Because.GROUP_PERMISSION),
        Verdict(False, Because.NOT_ADMINISTRATOR),
    ),
    (
        "the user's own flag is named before a group's",
        {"own": BOTH, "groups": (BOTH,)},
        Verdict(True, Because.USER_PERMISSION),
        Verdict(True, Because.USER_PERMISSION),
        Verdict(False, Because.NOT_ADMINISTRATOR),
    ),
    (
        "groups add up: one gives turn-on, another keeps-on",
        {"groups": (TURN_ON, KEEPS_ON)},
        Verdict(True, Because.GROUP_PERMISSION),
        Verdict(True, Because.GROUP_PERMISSION),
        Verdict(False, Because.NOT_ADMINISTRATOR),
    ),
    (
        "an administrator may turn it on, but does not keep it on",
        {"is_admin": True},
        Verdict(True, Because.ADMINISTRATOR),
        Verdict(False, Because.NOT_GRANTED),
        Verdict(True, Because.ADMINISTRATOR),
    ),
    (
        "an administrator with keeps-on",
        {"is_admin": True, "own": KEEPS_ON},
        Verdict(True, Because.ADMINISTRATOR),
        Verdict(True, Because.USER_PERMISSION),
        Verdict(True, Because.ADMINISTRATOR),
    ),
    (
        "the global block beats the user's own permission",
        {"own": BOTH, "nobody_may_turn_on": True},
        Verdict(False, Because.GLOBAL_BLOCK),
        Verdict(True, Because.USER_PERMISSION),
        Verdict(False, Because.NOT_ADMINISTRATOR),
    ),
    (
        "the global block beats a group's permission",
        {"groups": (TURN_ON,), "nobody_may_turn_on": True},
        Verdict(False, Because.GLOBAL_BLOCK),
        Verdict(False, Because.NOT_GRANTED),
        Verdict(False, Because.NOT_ADMINISTRATOR),
    ),
    (
        "the global block beats an administrator on demand, not by hand",
        {"is_admin": True, "nobody_may_turn_on": True},
        Verdict(False, Because.GLOBAL_BLOCK),
        Verdict(False, Because.NOT_GRANTED),
        Verdict(True, Because.ADMINISTRATOR),
    ),
    (
        "a blocked user has nothing, whatever the groups say",
        {"own": BOTH, "groups": (BOTH,), "is_blocked": True},
        Verdict(False, Because.BLOCKED_USER),
        Verdict(False, Because.BLOCKED_USER),
        Verdict(False, Because.BLOCKED_USER),
    ),
    (
        "a blocked administrator has nothing either",
        {"is_admin": True, "is_blocked": True},
        Verdict(False, Because.BLOCKED_USER),
        Verdict(False, Because.BLOCKED_USER),
        Verdict(False, Because.BLOCKED_USER),
    ),
    (
        "blocked is named before the global block",
        {"own": TURN_ON, "is_blocked": True, "nobody_may_turn_on": True},
        Verdict(False, Because.BLOCKED_USER),
        Verdict(False, Because.BLOCKED_USER),
        Verdict(False, Because.BLOCKED_USER),
    ),
]


@pytest.mark.parametrize(
    ("inputs", "on_demand", "keeps_on", "by_hand"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_precedence(
    inputs: dict[str, object], on_demand: Verdict, keeps_on: Verdict, by_hand: Verdict
) -> None:
    result = permissions(**inputs)  # type: ignore[arg-type]
    assert result.turn_on_on_demand == on_demand
    assert result.keeps_on == keeps_on
    assert result.turn_on_or_off_by_hand == by_hand


FLAGS = [NONE, TURN_ON, KEEPS_ON, BOTH]
GROUP_SETS: list[tuple[CapacityFlags, ...]] = [
    (),
    (NONE,),
    (TURN_ON,),
    (KEEPS_ON,),
    (NONE, BOTH),
    (TURN_ON, KEEPS_ON),
]
EVERY_INPUT = list(
    itertools.product(FLAGS, GROUP_SETS, [False, True], [False, True], [False, True])
)


@pytest.mark.parametrize(
    ("own", "groups", "is_admin", "is_blocked", "blocked_globally"), EVERY_INPUT
)
def test_invariants_over_every_combination(
    own: CapacityFlags,
    groups: tuple[CapacityFlags, ...],
    is_admin: bool,
    is_blocked: bool,
    blocked_globally: bool,
) -> None:
    result = permissions(
        own=own,
        groups=groups,
        is_admin=is_admin,
        is_blocked=is_blocked,
        nobody_may_turn_on=blocked_globally,
    )
    on_demand = result.turn_on_on_demand.allowed
    any_turn_on = own.may_turn_on or any(group.may_turn_on for group in groups)
    any_keeps_on = own.keeps_on or any(group.keeps_on for group in groups)
    # The one-line summary of the precedence:
    assert on_demand == (not is_blocked and not blocked_globally and (is_admin or any_turn_on))
    assert result.keeps_on.allowed == (not is_blocked and any_keeps_on)
    assert result.turn_on_or_off_by_hand.allowed == (is_admin and not is_blocked)
    # A reason always matches the verdict.
    for verdict in (result.turn_on_on_demand, result.keeps_on, result.turn_on_or_off_by_hand):
        granting = {Because.ADMINISTRATOR, Because.USER_PERMISSION, Because.GROUP_PERMISSION}
        assert verdict.allowed == (verdict.because in granting)
    # One more group never takes a permission away.
    more = permissions(
        own=own,
        groups=(*groups, BOTH),
        is_admin=is_admin,
        is_blocked=is_blocked,
        nobody_may_turn_on=blocked_globally,
    )
    assert more.turn_on_on_demand.allowed >= on_demand
    assert more.keeps_on.allowed >= result.keeps_on.allowed
    # The global block never grants anything, and never touches keeps-on or the buttons.
    unblocked = permissions(
        own=own, groups=groups, is_admin=is_admin, is_blocked=is_blocked, nobody_may_turn_on=False
    )
    assert on_demand <= unblocked.turn_on_on_demand.allowed
    assert result.keeps_on == unblocked.keeps_on
    assert result.turn_on_or_off_by_hand == unblocked.turn_on_or_off_by_hand


def test_groups_may_be_any_iterable_and_are_read_once() -> None:
    result = permissions(groups=iter([NONE, TURN_ON, KEEPS_ON]))  # type: ignore[arg-type]
    assert result.turn_on_on_demand.allowed
    assert result.keeps_on.allowed


def test_results_are_frozen() -> None:
    result = permissions()
    with pytest.raises(FrozenInstanceError):
        result.keeps_on = Verdict(True, Because.USER_PERMISSION)  # type: ignore[misc]
