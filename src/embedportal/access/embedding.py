"""How a report is embedded: ``app-owned`` (embed for your customers: an embed token the portal
mints with its service principal) or ``user-owned`` (embed for your organization: the person's
own Entra token, ``tokenType: Aad``, so Power BI shows them what their own rights allow).

Each report follows the organization's default unless an administrator chose for it.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from embedportal.access.audit import record
from embedportal.db.models import Organization, Report, User
from embedportal.i18n import N_

APP_OWNED = "app-owned"
USER_OWNED = "user-owned"
EMBEDDING_MODES = (APP_OWNED, USER_OWNED)
# The report page's choice that follows the organization's default.
AS_ORGANIZATION = ""


class EmbeddingInputError(ValueError):
    """A choice that is not one of the modes; the message is an English source string."""


def organization_default(organization: Organization) -> str:
    """How the reports without a choice of their own are embedded."""
    default = organization.default_embedding
    return default if default in EMBEDDING_MODES else APP_OWNED


def embedding_of(*, report: Report, organization: Organization) -> str:
    """The mode the report is embedded with now."""
    if report.embedding in EMBEDDING_MODES:
        return report.embedding
    return organization_default(organization)


def parse_default_embedding(value: str) -> str | None:
    """The organization default the Settings form names, or None when it names none."""
    chosen = value.strip() or APP_OWNED
    return chosen if chosen in EMBEDDING_MODES else None


def set_report_embedding(*, session: Session, report: Report, choice: str, actor: User) -> bool:
    """Set how the report is embedded (``AS_ORGANIZATION``: the organization's default);
    audited. False when nothing changed. Raises EmbeddingInputError for an unknown choice."""
    chosen = choice.strip()
    if chosen != AS_ORGANIZATION and chosen not in EMBEDDING_MODES:
        raise EmbeddingInputError(N_("Choose how the report is embedded."))
    new = chosen or None
    if report.embedding == new:
        return False
    old, report.embedding = report.embedding, new
    session.flush()
    record(
        session=session,
        actor=actor,
        action="report.embedding_changed",
        target_type="report",
        target_id=report.id,
        detail={"embedding": {"old": old or "organization", "new": new or "organization"}},
    )
    return True
