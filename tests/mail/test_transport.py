"""The message a transport sends: headers built so nothing given can add one (mail injection)."""

from __future__ import annotations

import pytest

from embedportal.mail.transport import Mail, build_message


def _mail(**fields: str) -> Mail:
    values = {
        "recipient": "ana@example.com",
        "subject": "Welcome",
        "text_body": "Hello",
        "html_body": "<p>Hello</p>",
        "language": "pt_BR",
    }
    return Mail(**(values | fields))


def test_a_message_has_its_headers_and_both_bodies() -> None:
    message = build_message(_mail(), sender="Reports <reports@example.com>")
    assert message["To"] == "ana@example.com" and message["Subject"] == "Welcome"
    assert message["Content-Language"] == "pt-BR"
    assert message["Auto-Submitted"] == "auto-generated"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]


@pytest.mark.parametrize("field", ["subject", "recipient"])
def test_a_line_break_in_a_header_value_is_refused_never_a_new_header(field: str) -> None:
    with pytest.raises(ValueError):
        build_message(
            _mail(**{field: "Welcome\r\nBcc: victim@example.com"}), sender="r@example.com"
        )
