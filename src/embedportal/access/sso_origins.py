"""The applications an administrator allows to show the portal in a frame, for sessions opened
by a single sign-on link (Admin → API keys; docs/embedding-sso.md).

They join `EMBEDPORTAL_SSO_FRAME_ANCESTORS` (the operator's, fixed at start) in the
`frame-ancestors` of such a session's pages. Each is an origin as CSP writes it
(`https://app.example.com`, `https://*.example.com`, a port if any): the value goes into a
header, so anything else (a path, a `;`, a keyword) is refused with the reason.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from embedportal.access.audit import record
from embedportal.access.organization import ORGANIZATION_ID, get_organization
from embedportal.access.users import UserInputError
from embedportal.db.models import Organization, User
from embedportal.i18n import _
from embedportal.settings import CSP_ORIGIN

MAX_ORIGINS = 20
FIELD = "origins"


def parse_origins(text: str) -> str:
    """The origins in ``text`` (separated by spaces, commas or lines), space-separated, in the
    order given and without repeats; UserInputError naming the first one that is not an origin."""
    origins: list[str] = []
    for source in text.replace(",", " ").split():
        origin = source.rstrip("/").lower()  # scheme and host: letter case means nothing
        if not CSP_ORIGIN.fullmatch(origin):
            raise UserInputError(
                _(
                    "“%(source)s” is not an origin such as https://app.example.com (a scheme, a "
                    "host and maybe a port; no path).",
                    source=source[:100],
                ),
                field=FIELD,
            )
        if origin not in origins:
            origins.append(origin)
    if len(origins) > MAX_ORIGINS:
        raise UserInputError(
            _("Name at most %(count)s applications.", count=MAX_ORIGINS), field=FIELD
        )
    return " ".join(origins)


def sso_origins(*, session: Session) -> str:
    """The allowed origins, space-separated ("" for none). Read only: every SSO page asks."""
    organization = session.get(Organization, ORGANIZATION_ID)
    return organization.sso_frame_ancestors if organization is not None else ""


def set_sso_origins(*, session: Session, text: str, actor: User | None) -> bool:
    """Save the origins in ``text`` (validated as above); audited. False when nothing changed."""
    origins = parse_origins(text)
    organization = get_organization(session=session)
    if organization.sso_frame_ancestors == origins:
        return False
    record(
        session=session,
        actor=actor,
        action="organization.sso_origins_changed",
        target_type="organization",
        target_id=str(organization.id),
        detail={"before": organization.sso_frame_ancestors, "after": origins},
    )
    organization.sso_frame_ancestors = origins
    session.flush()
    return True
