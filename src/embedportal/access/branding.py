"""The organization's branding: its primary colour and the images it replaces the portal's own
with (logo, favicon, sign-in background).

The checks are pure (`parse_color`, `sniff_image`, `theme_css`); `brand_of` and `save_branding`
read and write the database. An image is recognised by its bytes, never by the name or type the
browser sent, and SVG is not taken: it can carry script, and these images are served from the
portal's own origin.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from embedportal.access.audit import record
from embedportal.db.models import BrandImage, Organization, User
from embedportal.i18n import N_

LOGO = "logo"
FAVICON = "favicon"
SIGN_IN_BACKGROUND = "sign_in_background"
IMAGE_KINDS = (LOGO, FAVICON, SIGN_IN_BACKGROUND)

# A logo or favicon is small; a background photo may be larger, not much (every sign-in loads it).
MAX_IMAGE_BYTES = {LOGO: 512 * 1024, FAVICON: 128 * 1024, SIGN_IN_BACKGROUND: 2 * 1024 * 1024}

_COLOR = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")

# Magic numbers of the formats accepted, and the type each is served as.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\x00\x00\x01\x00", "image/x-icon"),
)


class BrandingError(ValueError):
    """A refused colour or image; the message is English, marked for translation, with
    %(name)s-style fields in ``fields``."""

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


@dataclass(frozen=True, slots=True)
class Brand:
    """What every page shows of the organization: small and immutable, so the request context
    can cache it."""

    name: str
    color: str = ""  # "#rrggbb", or empty for the portal's own
    versions: Mapping[str, str] = field(default_factory=dict)  # kind → digest, set images only

    def image_url(self, kind: str) -> str | None:
        version = self.versions.get(kind)
        return f"/brand/{kind}?v={version[:16]}" if version else None

    @property
    def theme_version(self) -> str | None:
        """The theme stylesheet's version, or None when there is nothing to theme."""
        if not self.color and SIGN_IN_BACKGROUND not in self.versions:
            return None
        seed = f"{self.color}:{self.versions.get(SIGN_IN_BACKGROUND, '')}"
        return hashlib.sha256(seed.encode()).hexdigest()[:16]


DEFAULT_BRAND = Brand(name="embedportal")


def parse_color(value: str) -> str:
    """``#rgb``, ``rgb``, ``#rrggbb`` or ``rrggbb`` → ``#rrggbb`` in lower case; empty → empty
    (the portal's own colour)."""
    text = value.strip()
    if not text:
        return ""
    match = _COLOR.fullmatch(text)
    if match is None:
        raise BrandingError(
            N_("Enter a colour as #rrggbb, for example #1f6feb."),
        )
    digits = match.group(1).lower()
    if len(digits) == 3:
        digits = "".join(digit * 2 for digit in digits)
    return f"#{digits}"


def sniff_image(kind: str, data: bytes) -> str:
    """The content type of an accepted image, from its first bytes; refuses anything else."""
    if not data:
        raise BrandingError(N_("The file is empty."))
    limit = MAX_IMAGE_BYTES[kind]
    if len(data) > limit:
        raise BrandingError(
            N_("The image is larger than %(size)s KiB."),
            size=limit // 1024,
        )
    for signature, content_type in _SIGNATURES:
        if data.startswith(signature):
            if content_type == "image/x-icon" and kind != FAVICON:
                break
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise BrandingError(N_("Choose a PNG, JPEG, GIF or WebP image (an ICO file for the favicon)."))


def _channel(value: float) -> float:
    # sRGB to linear light, for the relative luminance of WCAG 2.
    return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4


def luminance(color: str) -> float:
    red, green, blue = (int(color[index : index + 2], 16) / 255 for index in (1, 3, 5))
    return 0.2126 * _channel(red) + 0.7152 * _channel(green) + 0.0722 * _channel(blue)


def contrast_ratio(first: str, second: str) -> float:
    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def text_color_on(color: str) -> str:
    """White or near-black, whichever reads better on ``color`` (a button's label)."""
    dark = "#111111"
    return "#ffffff" if contrast_ratio(color, "#ffffff") >= contrast_ratio(color, dark) else dark


def shade(color: str, factor: float) -> str:
    """``color`` darkened (factor < 1) or lightened (factor > 1), for hover and focus."""
    channels = []
    for index in (1, 3, 5):
        value = int(color[index : index + 2], 16)
        value = round(value * factor) if factor < 1 else round(value + (255 - value) * (factor - 1))
        channels.append(max(0, min(255, value)))
    return "#" + "".join(f"{value:02x}" for value in channels)


def theme_css(brand: Brand) -> str:
    """The stylesheet that puts the brand on Pico's variables and the sign-in page. The colour
    and URL are produced by this module (checked hex, our own path), never free text."""
    rules: list[str] = []
    if brand.color:
        color = brand.color
        hover = shade(color, 0.85)
        rules.append(
            ":root, [data-theme] {"
            f" --pico-primary: {color};"
            f" --pico-primary-background: {color};"
            f" --pico-primary-border: {color};"
            f" --pico-primary-underline: {color}80;"
            f" --pico-primary-hover: {hover};"
            f" --pico-primary-hover-background: {hover};"
            f" --pico-primary-hover-border: {hover};"
            f" --pico-primary-hover-underline: {hover};"
            f" --pico-primary-focus: {color}40;"
            f" --pico-primary-inverse: {text_color_on(color)};"
            f" --brand-color: {color};"
            " }"
        )
    background = brand.image_url(SIGN_IN_BACKGROUND)
    if background:
        rules.append(
            "body.sign-in-page {"
            f' background: url("{background}") center / cover no-repeat fixed;'
            " }"
        )
    return "\n".join(rules) + "\n"


def brand_of(*, session: Session) -> Brand:
    organization = session.get(Organization, 1)
    if organization is None:
        return DEFAULT_BRAND
    versions = {
        row.kind: row.digest for row in session.execute(select(BrandImage.kind, BrandImage.digest))
    }
    return Brand(name=organization.name, color=organization.brand_color, versions=versions)


def brand_image(*, session: Session, kind: str) -> BrandImage | None:
    if kind not in IMAGE_KINDS:
        return None
    return session.get(BrandImage, kind)


@dataclass(frozen=True, slots=True)
class BrandingChanges:
    """What the branding form asks for: a colour, new images (checked) and images to drop."""

    color: str
    images: Mapping[str, tuple[str, bytes]] = field(default_factory=dict)  # kind → (type, data)
    removed: frozenset[str] = frozenset()


def save_branding(*, session: Session, changes: BrandingChanges, actor: User | None) -> list[str]:
    """Apply the changes; audits them as one entry. Returns what changed (field names)."""
    organization = session.get(Organization, 1)
    if organization is None:
        organization = Organization(id=1)
        session.add(organization)
    detail: dict[str, object] = {}
    if organization.brand_color != changes.color:
        detail["brand_color"] = {"old": organization.brand_color or None, "new": changes.color}
        organization.brand_color = changes.color
    for kind in IMAGE_KINDS:
        current = session.get(BrandImage, kind)
        if kind in changes.images:
            content_type, data = changes.images[kind]
            digest = hashlib.sha256(data).hexdigest()
            if current is not None and current.digest == digest:
                continue
            if current is None:
                session.add(
                    BrandImage(kind=kind, content_type=content_type, data=data, digest=digest)
                )
            else:
                current.content_type, current.data, current.digest = content_type, data, digest
            detail[kind] = "image replaced" if current is not None else "image added"
        elif kind in changes.removed and current is not None:
            session.delete(current)
            detail[kind] = "image removed"
    if detail:
        session.flush()
        record(
            session=session,
            actor=actor,
            action="organization.branding_changed",
            target_type="organization",
            target_id=str(organization.id),
            detail=detail,
        )
    return list(detail)
