"""The JSON API's reference: its OpenAPI schema and Swagger UI, in development for anyone and
elsewhere for administrators only (the schema maps every endpoint and parameter, which nobody
outside needs). Swagger UI comes from the npm package `swagger-ui-dist`, served by the portal
like every other browser package, never from a CDN."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse

from embedportal.web.deps import AppSettings, NotAllowed, NotSignedIn, OptionalUser
from embedportal.web.templating import render

router = APIRouter(tags=["docs"], include_in_schema=False)

OPENAPI_URL = "/api/openapi.json"


def api_docs_reader(settings: AppSettings, user: OptionalUser) -> None:
    """Anyone in development; otherwise an administrator (401 signed out, 403 for others)."""
    if settings.environment == "development":
        return
    if user is None or user.is_blocked:
        raise NotSignedIn()
    if not user.is_admin:
        raise NotAllowed()


def openapi_document(request: Request) -> dict[str, Any]:
    """The app's OpenAPI document (FastAPI builds it once and keeps it)."""
    document: dict[str, Any] = request.app.openapi()
    return document


DocsReader = Depends(api_docs_reader)


@router.get(OPENAPI_URL, dependencies=[DocsReader])
def openapi_schema(document: Annotated[dict[str, Any], Depends(openapi_document)]) -> JSONResponse:
    return JSONResponse(document)


@router.get("/api/docs", response_class=HTMLResponse, dependencies=[DocsReader])
def api_reference(request: Request) -> HTMLResponse:
    return render(request, "api_docs.html", {"openapi_url": OPENAPI_URL})
