"""The applications an administrator allows to frame single sign-on sessions: origins only,
saved as one space-separated value, audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access.sso_origins import MAX_ORIGINS, parse_origins, set_sso_origins, sso_origins
from embedportal.access.users import UserInputError
from embedportal.db.models import AuditEntry
from tests.access.conftest import NewUser


@pytest.mark.parametrize(
    ("text", "saved"),
    [
        ("", ""),
        ("https://app.example.com", "https://app.example.com"),
        (
            "https://app.example.com/\n  http://localhost:8080 ",
            "https://app.example.com http://localhost:8080",
        ),
        (
            "https://a.example.com, https://*.b.example.com",
            "https://a.example.com https://*.b.example.com",
        ),
        ("https://app.example.com HTTPS://APP.example.com", "https://app.example.com"),
    ],
)
def test_origins_are_read_from_lines_spaces_or_commas(text: str, saved: str) -> None:
    assert parse_origins(text) == saved


@pytest.mark.parametrize(
    "text",
    [
        "app.example.com",
        "https://app.example.com/reports",
        "https://app.example.com; script-src *",
        "'self'",
        "*",
        "javascript:alert(1)",
        "https://exa mple.com/x",
    ],
)
def test_anything_but_an_origin_is_refused_naming_it(text: str) -> None:
    with pytest.raises(UserInputError) as refused:
        parse_origins(text)
    assert set(refused.value.errors) == {"origins"}
    assert "is not an origin" in refused.value.errors["origins"]


def test_too_many_origins_are_refused() -> None:
    many = " ".join(f"https://app{number}.example.com" for number in range(MAX_ORIGINS + 1))
    with pytest.raises(UserInputError):
        parse_origins(many)


def test_saving_is_audited_and_saving_the_same_again_changes_nothing(
    db: Session, new_user: NewUser
) -> None:
    admin = new_user("admin@example.com")
    assert sso_origins(session=db) == ""
    assert set_sso_origins(session=db, text="https://app.example.com", actor=admin)
    assert not set_sso_origins(session=db, text="https://app.example.com/", actor=admin)
    assert sso_origins(session=db) == "https://app.example.com"
    entries = db.scalars(
        select(AuditEntry).where(AuditEntry.action == "organization.sso_origins_changed")
    ).all()
    assert [entry.detail for entry in entries] == [
        {"before": "", "after": "https://app.example.com"}
    ]
    assert entries[0].actor_email == "admin@example.com"
