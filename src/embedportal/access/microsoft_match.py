"""Who a Microsoft sign-in is in the portal: pure decisions, no I/O (the service that reads
the database and acts on them is `access.microsoft_accounts`).

The rules, in order:

1. An Entra account already linked to a user (its object id within its tenant) is that user.
2. Otherwise the id token's e-mail (or sign-in name) finds an existing user, but only when the
   tenant is trusted to vouch for it: the app registration's own tenant, or a tenant the
   organization lets people sign up from. With a multi-tenant registration anyone can own a
   tenant and put any e-mail in it, so an e-mail from an unknown tenant proves nothing.
3. Otherwise a person from a tenant allowed to sign up gets a new viewer account.
4. A blocked user is refused, whichever way they were found.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from embedportal.powerbi.signin import MULTI_TENANT

SIGN_IN_METHODS = ("password", "microsoft", "both")
# A tenant id: a GUID, as Entra puts it in the id token's `tid`.
_TENANT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class MatchOutcome(enum.StrEnum):
    SIGNED_IN = "signed_in"  # the linked user
    LINKED = "linked"  # an existing user found by e-mail, now linked
    SIGNED_UP = "signed_up"  # a new user, from a tenant allowed to sign up
    BLOCKED = "blocked"
    UNKNOWN = "unknown"  # nobody with that e-mail, and sign-up not allowed from that tenant
    UNTRUSTED_TENANT = "untrusted_tenant"  # an e-mail the tenant may not vouch for
    LINKED_TO_ANOTHER = "linked_to_another"  # that user signs in with another Entra account

    @property
    def admitted(self) -> bool:
        return self in (MatchOutcome.SIGNED_IN, MatchOutcome.LINKED, MatchOutcome.SIGNED_UP)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A portal user a sign-in may be: whether they are blocked and linked to an Entra
    account already."""

    is_blocked: bool
    has_link: bool


def password_allowed(methods: str) -> bool:
    return methods in ("password", "both") or methods not in SIGN_IN_METHODS


def microsoft_allowed(methods: str) -> bool:
    return methods in ("microsoft", "both")


def email_trusted(
    *, tenant_id: str, registration_tenant: str, signup_tenants: frozenset[str]
) -> bool:
    """Whether the id token's tenant may vouch for its e-mail address."""
    tenant = tenant_id.lower()
    own = registration_tenant.lower()
    return (own not in MULTI_TENANT and tenant == own) or tenant in signup_tenants


def decide(
    *,
    linked: Candidate | None,
    by_email: Candidate | None,
    email_is_trusted: bool,
    signup_allowed: bool,
) -> MatchOutcome:
    """The outcome of one sign-in, from what the database holds (see the module's rules)."""
    if linked is not None:
        return MatchOutcome.BLOCKED if linked.is_blocked else MatchOutcome.SIGNED_IN
    if by_email is not None:
        if not email_is_trusted:
            return MatchOutcome.UNTRUSTED_TENANT
        if by_email.has_link:
            return MatchOutcome.LINKED_TO_ANOTHER
        return MatchOutcome.BLOCKED if by_email.is_blocked else MatchOutcome.LINKED
    return MatchOutcome.SIGNED_UP if signup_allowed else MatchOutcome.UNKNOWN


def parse_tenant_list(text: str) -> tuple[frozenset[str], list[str]]:
    """Tenant ids separated by commas, spaces or lines: (the ids in lower case, the entries
    that are not a tenant id)."""
    entries = [entry for entry in re.split(r"[\s,;]+", text.strip()) if entry]
    bad = [entry for entry in entries if not _TENANT_ID.match(entry.lower())]
    return frozenset(entry.lower() for entry in entries if entry not in bad), bad
