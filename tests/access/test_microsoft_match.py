"""Who a Microsoft sign-in is: every combination of the facts, against the module's rules."""

from __future__ import annotations

import itertools

import pytest

from embedportal.access.microsoft_match import (
    SIGN_IN_METHODS,
    Candidate,
    MatchOutcome,
    decide,
    email_trusted,
    microsoft_allowed,
    parse_tenant_list,
    password_allowed,
)

OWN = "00000000-0000-0000-0000-0000000e0001"
OTHER = "00000000-0000-0000-0000-00000000beef"

CANDIDATES = [
    None,
    *(
        Candidate(is_blocked=b, has_link=linked)
        for b, linked in itertools.product([False, True], repeat=2)
    ),
]


def _expected(
    linked: Candidate | None, by_email: Candidate | None, trusted: bool, signup: bool
) -> MatchOutcome:
    if linked is not None:
        return MatchOutcome.BLOCKED if linked.is_blocked else MatchOutcome.SIGNED_IN
    if by_email is None:
        return MatchOutcome.SIGNED_UP if signup else MatchOutcome.UNKNOWN
    if not trusted:
        return MatchOutcome.UNTRUSTED_TENANT
    if by_email.has_link:
        return MatchOutcome.LINKED_TO_ANOTHER
    return MatchOutcome.BLOCKED if by_email.is_blocked else MatchOutcome.LINKED


@pytest.mark.parametrize(
    ("linked", "by_email", "trusted", "signup"),
    list(itertools.product(CANDIDATES, CANDIDATES, [False, True], [False, True])),
)
def test_every_combination_follows_the_rules(
    linked: Candidate | None, by_email: Candidate | None, trusted: bool, signup: bool
) -> None:
    outcome = decide(
        linked=linked, by_email=by_email, email_is_trusted=trusted, signup_allowed=signup
    )
    assert outcome == _expected(linked, by_email, trusted, signup)
    # Nobody blocked is ever let in.
    blocked = (linked or by_email) is not None and (linked or by_email).is_blocked  # type: ignore[union-attr]
    if blocked and outcome.admitted:
        pytest.fail(f"a blocked user was admitted: {outcome}")


def test_which_outcomes_admit() -> None:
    admitted = {outcome for outcome in MatchOutcome if outcome.admitted}
    assert admitted == {MatchOutcome.SIGNED_IN, MatchOutcome.LINKED, MatchOutcome.SIGNED_UP}


@pytest.mark.parametrize(
    ("tenant", "registration", "signup", "trusted"),
    [
        (OWN, OWN, frozenset(), True),
        (OWN.upper(), OWN, frozenset(), True),
        (OTHER, OWN, frozenset(), False),
        (OTHER, OWN, frozenset({OTHER}), True),
        # A multi-tenant registration vouches for no tenant by itself.
        (OWN, "organizations", frozenset(), False),
        (OWN, "common", frozenset(), False),
        (OWN, "organizations", frozenset({OWN}), True),
    ],
)
def test_which_tenants_may_vouch_for_an_email(
    tenant: str, registration: str, signup: frozenset[str], trusted: bool
) -> None:
    assert (
        email_trusted(tenant_id=tenant, registration_tenant=registration, signup_tenants=signup)
        is trusted
    )


def test_sign_in_methods() -> None:
    assert [password_allowed(m) for m in SIGN_IN_METHODS] == [True, False, True]
    assert [microsoft_allowed(m) for m in SIGN_IN_METHODS] == [False, True, True]
    # Anything else stored (an older or damaged row) never locks passwords out.
    assert password_allowed("") and not microsoft_allowed("")


def test_tenant_lists_are_parsed_and_bad_entries_named() -> None:
    assert parse_tenant_list("") == (frozenset(), [])
    assert parse_tenant_list(f" {OWN.upper()},\n{OTHER} ; ") == (frozenset({OWN, OTHER}), [])
    tenants, bad = parse_tenant_list(f"{OWN} contoso.com not-a-guid")
    assert tenants == frozenset({OWN})
    assert bad == ["contoso.com", "not-a-guid"]
