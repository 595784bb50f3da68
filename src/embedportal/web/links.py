"""Links the portal sends out of the browser (in mails): absolute, to the public address."""

from __future__ import annotations

from fastapi import Request

from embedportal.settings import Settings


def portal_base_url(request: Request, settings: Settings) -> str:
    """EMBEDPORTAL_PUBLIC_URL when set (behind a proxy the request's own host may be an
    internal one), else the address this request came to."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")
