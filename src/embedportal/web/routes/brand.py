"""The organization's brand as every page loads it: its images and the theme stylesheet.

Public (the sign-in page shows them) and cacheable for a year: each URL carries the version of
what it serves (`?v=`), so a change is a new URL."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from embedportal.access.branding import IMAGE_KINDS, brand_image, brand_of, theme_css
from embedportal.i18n import _
from embedportal.web.deps import DbSession

router = APIRouter(prefix="/brand", tags=["static"], include_in_schema=False)

_CACHED = "public, max-age=31536000, immutable"


@router.get("/theme.css")
def theme(db: DbSession) -> Response:
    return Response(
        theme_css(brand_of(session=db)),
        media_type="text/css",
        headers={"Cache-Control": _CACHED},
    )


@router.get("/{kind}")
def image(kind: str, db: DbSession) -> Response:
    stored = brand_image(session=db, kind=kind) if kind in IMAGE_KINDS else None
    if stored is None:
        raise HTTPException(status_code=404, detail=_("There is no such image."))
    return Response(
        stored.data,
        media_type=stored.content_type,
        headers={
            "Cache-Control": _CACHED,
            "ETag": f'"{stored.digest[:32]}"',
            # An image, never a document: nothing in it may run, even if opened on its own.
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )
