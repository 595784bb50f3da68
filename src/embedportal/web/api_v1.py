"""What the integration API's routes (web/routes/api_v1_*.py) share: the error body, paging,
and turning a service's refusal into a 4xx with a reason."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from embedportal.access.api_keys import ApiCaller
from embedportal.access.users import UserInputError
from embedportal.i18n import _


class ApiError(Exception):
    """A refusal of the integration API: the status, its machine code and a message."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def api_error_response(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50
# Ids beyond a 32-bit integer are no row of ours: refused as bad input, never sent to SQL.
MAX_ID = 2**31 - 1


class ApiErrorBody(BaseModel):
    code: str = Field(examples=["InvalidApiKey"])
    message: str = Field(examples=["The API key is not valid. Check that it was copied whole."])


# Every route lists these, so the OpenAPI shows the error body for each refusal.
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ApiErrorBody, "description": "Refused input, with the reason"},
    401: {"model": ApiErrorBody, "description": "No key, or a wrong, expired or revoked one"},
    403: {"model": ApiErrorBody, "description": "The key lacks the scope this call needs"},
    404: {"model": ApiErrorBody, "description": "No such object"},
    429: {"model": ApiErrorBody, "description": "Too many requests with this key"},
}


class ApiModel(BaseModel):
    """Request bodies: unknown fields are refused (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class Paging(BaseModel):
    page: int = Field(1, ge=1, le=1_000_000, description="The page, from 1.")
    per_page: int = Field(
        DEFAULT_PER_PAGE, ge=1, le=MAX_PER_PAGE, description="Items per page (at most 200)."
    )

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


PagingQuery = Annotated[Paging, Query()]


def refused(error: UserInputError, code: str = "InvalidInput") -> ApiError:
    """A service's refusal as a 400: its messages, and the fields they are about."""
    fields = sorted(field for field in error.errors if field != "_form")
    message = " ".join(error.errors.values())
    if fields:
        message = f"{message} ({', '.join(fields)})"
    return ApiError(400, code, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NotFound", message)


def require_also(caller: ApiCaller, scope: str) -> None:
    """A second scope some calls need (RLS settings need `rls:write` beside their own)."""
    if scope not in caller.scopes:
        raise ApiError(
            403,
            "InsufficientScope",
            _("This API key does not have the scope “%(scope)s” this call needs.", scope=scope),
        )
