"""The mails read in the recipient's language, name the organization, and escape in HTML."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from embedportal.access.credential_notices import PASSWORD_SET_BY_ADMIN
from embedportal.mail import messages
from embedportal.mail.messages import MailBrand

LINK = "https://portal.example.com/password/set/abc_DEF-123"
ACME = MailBrand(name="Acme")


def test_an_invitation_in_english_names_the_organization_the_link_and_its_lifetime() -> None:
    mail = messages.invitation(
        language="en", brand=ACME, name="Ana", email="ana@example.com", link=LINK, hours=72
    )
    assert mail.subject == "Your account at Acme"
    assert mail.text_body.startswith("Hello Ana,")
    assert LINK + "\n" in mail.text_body
    assert "72 hours" in mail.text_body
    assert f'<a href="{LINK}">' in mail.html_body
    assert mail.language == "en"


def test_an_invitation_in_portuguese() -> None:
    mail = messages.invitation(
        language="pt_BR", brand=ACME, name="", email="ana@example.com", link=LINK, hours=72
    )
    assert mail.subject == "Sua conta em Acme"
    assert mail.text_body.startswith("Olá,")
    assert "72 horas" in mail.text_body
    assert 'lang="pt-BR"' in mail.html_body


def test_a_reset_mail_in_portuguese() -> None:
    mail = messages.password_reset(language="pt_BR", brand=ACME, name="Ana", link=LINK, minutes=60)
    assert mail.subject == "Defina uma nova senha para Acme"
    assert "60 minutos" in mail.text_body
    assert LINK in mail.text_body


WHEN = datetime(2026, 12, 3, 14, 5, 9, tzinfo=ZoneInfo("America/Sao_Paulo"))


def test_a_credential_notice_translates_what_changed_and_writes_when_as_the_reader_does() -> None:
    english = messages.credential_changed(
        language="en", brand=ACME, name="Ana", what=PASSWORD_SET_BY_ADMIN, when=WHEN
    )
    portuguese = messages.credential_changed(
        language="pt_BR", brand=ACME, name="Ana", what=PASSWORD_SET_BY_ADMIN, when=WHEN
    )
    assert "An administrator set a new password" in english.text_body
    assert "Um administrador definiu uma nova senha" in portuguese.text_body
    assert portuguese.subject == "Seus dados de acesso em Acme mudaram"
    assert "Dec 3, 2026, 2:05:09" in english.text_body
    assert "3 de dez. de 2026 14:05:09 (-03)" in portuguese.text_body


def test_an_unknown_language_falls_back_to_english() -> None:
    mail = messages.password_reset(language="xx", brand=ACME, name="", link=LINK, minutes=5)
    assert mail.language == "en"
    assert mail.subject == "Set a new password for Acme"


def test_html_escapes_what_it_is_given() -> None:
    mail = messages.invitation(
        language="en",
        brand=MailBrand(name="<b>Acme</b>"),
        name="<script>x</script>",
        email="ana@example.com",
        link='https://x.example/"onmouseover=1',
        hours=1,
    )
    assert "<script>" not in mail.html_body
    assert "<b>Acme" not in mail.html_body
    assert '"onmouseover' not in mail.html_body
    assert "&lt;script&gt;" in mail.html_body


def test_a_branded_mail_shows_the_name_in_the_colour_and_the_logo_above_the_words() -> None:
    brand = MailBrand(
        name="Acme", color="#aa3300", logo_url="https://portal.example.com/brand/logo?v=1"
    )
    mail = messages.password_reset(language="en", brand=brand, name="Ana", link=LINK, minutes=5)
    body = mail.html_body
    assert body.index('src="https://portal.example.com/brand/logo?v=1"') < body.index("Hello")
    assert "color: #aa3300" in body
    assert ">Acme</div>" in body
    # The plain text part stays plain.
    assert "#aa3300" not in mail.text_body and "logo" not in mail.text_body


def test_an_unbranded_mail_still_names_the_organization_above_the_words() -> None:
    mail = messages.invitation(
        language="en", brand=ACME, name="Ana", email="a@example.com", link=LINK, hours=1
    )
    assert "<img" not in mail.html_body
    assert ">Acme</div>" in mail.html_body
