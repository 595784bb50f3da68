"""Branding's checks (colour, images, contrast, the theme) and what saving it records."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access.branding import (
    FAVICON,
    LOGO,
    MAX_IMAGE_BYTES,
    SIGN_IN_BACKGROUND,
    Brand,
    BrandingChanges,
    BrandingError,
    brand_of,
    contrast_ratio,
    parse_color,
    save_branding,
    shade,
    sniff_image,
    text_color_on,
    theme_css,
)
from embedportal.db.models import AuditEntry, Organization

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
ICO = b"\x00\x00\x01\x00" + b"\x00" * 32
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("#1F6FEB", "#1f6feb"), ("1f6feb", "#1f6feb"), ("#abc", "#aabbcc"), ("  ", ""), ("", "")],
)
def test_a_colour_is_stored_as_hash_and_six_lower_case_digits(typed: str, stored: str) -> None:
    assert parse_color(typed) == stored


@pytest.mark.parametrize(
    "typed", ["red", "#12345", "#1234567", "#ggg", "rgb(1,2,3)", "#123456;}body{x:y", "url(x)"]
)
def test_anything_but_a_hex_colour_is_refused(typed: str) -> None:
    with pytest.raises(BrandingError):
        parse_color(typed)


@given(st.text(max_size=20))
def test_a_parsed_colour_is_always_safe_to_write_into_css(typed: str) -> None:
    try:
        color = parse_color(typed)
    except BrandingError:
        return
    assert color == "" or (len(color) == 7 and color[0] == "#" and int(color[1:], 16) >= 0)


@given(st.from_regex(r"#[0-9a-f]{6}", fullmatch=True))
def test_the_button_label_colour_always_reads_at_least_as_well_as_the_other(color: str) -> None:
    chosen = text_color_on(color)
    other = "#111111" if chosen == "#ffffff" else "#ffffff"
    assert contrast_ratio(color, chosen) >= contrast_ratio(color, other)
    assert contrast_ratio(color, chosen) >= 4.5 or contrast_ratio(color, other) < 4.5


def test_shades_stay_colours() -> None:
    assert shade("#ffffff", 0.5) == "#808080"
    assert shade("#000000", 1.5) == "#808080"
    assert shade("#123456", 1.0) == "#123456"


def test_images_are_recognised_by_their_bytes_not_their_name() -> None:
    assert sniff_image(LOGO, PNG) == "image/png"
    assert sniff_image(LOGO, b"\xff\xd8\xff\xe0" + b"\x00" * 8) == "image/jpeg"
    assert sniff_image(LOGO, b"GIF89a" + b"\x00" * 8) == "image/gif"
    assert sniff_image(LOGO, b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_image(FAVICON, ICO) == "image/x-icon"


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        (LOGO, SVG),  # it can carry script
        (LOGO, b"<html><script>alert(1)</script>"),
        (LOGO, ICO),  # an icon only as the favicon
        (LOGO, b""),
        (FAVICON, PNG + b"\x00" * MAX_IMAGE_BYTES[FAVICON]),
        (SIGN_IN_BACKGROUND, b"%PDF-1.7"),
    ],
)
def test_other_files_and_oversized_images_are_refused(kind: str, data: bytes) -> None:
    with pytest.raises(BrandingError):
        sniff_image(kind, data)


def test_the_theme_puts_the_colour_on_picos_variables_and_the_background_on_sign_in() -> None:
    assert theme_css(Brand(name="x")) == "\n"
    css = theme_css(Brand(name="x", color="#ffcc00", versions={SIGN_IN_BACKGROUND: "ab" * 32}))
    assert "--pico-primary: #ffcc00;" in css
    assert "--pico-primary-inverse: #111111;" in css  # dark words on a light colour
    assert f'url("/brand/sign_in_background?v={"ab" * 8}")' in css
    assert "body.sign-in-page" in css


def test_an_image_url_changes_with_the_image() -> None:
    first = Brand(name="x", versions={LOGO: "a" * 64})
    second = Brand(name="x", versions={LOGO: "b" * 64})
    assert first.image_url(LOGO) != second.image_url(LOGO)
    assert first.image_url(FAVICON) is None
    assert Brand(name="x").theme_version is None
    assert (
        Brand(name="x", color="#123456").theme_version
        != Brand(name="x", color="#654321").theme_version
    )


def test_saving_records_one_entry_with_what_changed_and_nothing_when_nothing_did(
    db: Session,
) -> None:
    db.add(Organization(id=1, name="Acme"))
    db.flush()
    changed = save_branding(
        session=db,
        changes=BrandingChanges(color="#123456", images={LOGO: ("image/png", PNG)}),
        actor=None,
    )
    assert sorted(changed) == ["brand_color", "logo"]
    brand = brand_of(session=db)
    assert brand.name == "Acme" and brand.color == "#123456" and LOGO in brand.versions
    again = save_branding(
        session=db,
        changes=BrandingChanges(color="#123456", images={LOGO: ("image/png", PNG)}),
        actor=None,
    )
    assert again == []
    removed = save_branding(
        session=db, changes=BrandingChanges(color="", removed=frozenset({LOGO})), actor=None
    )
    assert sorted(removed) == ["brand_color", "logo"]
    assert brand_of(session=db).versions == {}
    entries = db.scalars(
        select(AuditEntry).where(AuditEntry.action == "organization.branding_changed")
    ).all()
    assert len(entries) == 2
    assert entries[0].detail["logo"] == "image added"
    assert entries[1].detail["logo"] == "image removed"
