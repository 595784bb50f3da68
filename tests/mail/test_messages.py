"""The mails read in the recipient's language, name the organization, and escape in HTML."""

from __future__ import annotations

from embedportal.access.credential_notices import PASSWORD_SET_BY_ADMIN
from embedportal.mail import messages

LINK = "https://portal.example.com/password/set/abc_DEF-123"


def test_an_invitation_in_english_names_the_organization_the_link_and_its_lifetime() -> None:
    mail = messages.invitation(
        language="en", organization="Acme", name="Ana", email="ana@example.com", link=LINK, hours=72
    )
    assert mail.subject == "Your account at Acme"
    assert mail.text_body.startswith("Hello Ana,")
    assert LINK + "\n" in mail.text_body
    assert "72 hours" in mail.text_body
    assert f'<a href="{LINK}">' in mail.html_body
    assert mail.language == "en"


def test_an_invitation_in_portuguese() -> None:
    mail = messages.invitation(
        language="pt_BR", organization="Acme", name="", email="ana@example.com", link=LINK, hours=72
    )
    assert mail.subject == "Sua conta em Acme"
    assert mail.text_body.startswith("Olá,")
    assert "72 horas" in mail.text_body
    assert 'lang="pt-BR"' in mail.html_body


def test_a_reset_mail_in_portuguese() -> None:
    mail = messages.password_reset(
        language="pt_BR", organization="Acme", name="Ana", link=LINK, minutes=60
    )
    assert mail.subject == "Defina uma nova senha para Acme"
    assert "60 minutos" in mail.text_body
    assert LINK in mail.text_body


def test_a_credential_notice_translates_what_changed() -> None:
    english = messages.credential_changed(
        language="en", organization="Acme", name="Ana", what=PASSWORD_SET_BY_ADMIN, when="now"
    )
    portuguese = messages.credential_changed(
        language="pt_BR", organization="Acme", name="Ana", what=PASSWORD_SET_BY_ADMIN, when="now"
    )
    assert "An administrator set a new password" in english.text_body
    assert "Um administrador definiu uma nova senha" in portuguese.text_body
    assert portuguese.subject == "Seus dados de acesso em Acme mudaram"


def test_an_unknown_language_falls_back_to_english() -> None:
    mail = messages.password_reset(
        language="xx", organization="Acme", name="", link=LINK, minutes=5
    )
    assert mail.language == "en"
    assert mail.subject == "Set a new password for Acme"


def test_html_escapes_what_it_is_given() -> None:
    mail = messages.invitation(
        language="en",
        organization="<b>Acme</b>",
        name="<script>x</script>",
        email="ana@example.com",
        link='https://x.example/"onmouseover=1',
        hours=1,
    )
    assert "<script>" not in mail.html_body
    assert "<b>Acme" not in mail.html_body
    assert '"onmouseover' not in mail.html_body
    assert "&lt;script&gt;" in mail.html_body
