"""Errors raised by the Power BI, Entra and ARM clients.

Every error is a :class:`PowerBIError`; callers that only need "did it work" catch that.
Messages never contain a token, a client secret or an Authorization header.
"""

from __future__ import annotations

from typing import Any


class PowerBIError(Exception):
    """A call to Entra ID, the Power BI REST API or Azure Resource Manager failed.

    ``status`` is the HTTP status (None when no response arrived), ``code`` the service's error
    code (``error.code`` in Power BI and ARM bodies, ``error`` in Entra's), ``request_id`` the
    ``RequestId`` / ``x-ms-request-id`` response header (quote it to Microsoft support), and
    ``retry_after_seconds`` the server's ``Retry-After`` when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after_seconds = retry_after_seconds

    def __str__(self) -> str:
        parts = [self.message]
        details = []
        if self.status is not None:
            details.append(f"status={self.status}")
        if self.code:
            details.append(f"code={self.code}")
        if self.request_id:
            details.append(f"request_id={self.request_id}")
        if details:
            parts.append(f"({', '.join(details)})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status!r}, code={self.code!r}, "
            f"request_id={self.request_id!r}, retry_after_seconds={self.retry_after_seconds!r})"
        )


class PowerBIAuthError(PowerBIError):
    """Our own credentials or access token were refused: Entra said no (bad tenant, client id
    or secret), or the API answered 401, or kept answering TokenExpired after a fresh token."""


class PowerBIForbiddenError(PowerBIError):
    """Authenticated, but not allowed (403): the service principal is not a member of the
    workspace, lacks a permission, the shared-capacity token quota is used up, and so on."""


class PowerBINotFoundError(PowerBIError):
    """404: the workspace, report, dataset or capacity does not exist (or is invisible to us)."""


class PowerBIBadRequestError(PowerBIError):
    """400: the service rejected the request, e.g. GenerateToken without a required RLS
    identity. ``message`` carries the service's own explanation."""


class PowerBIThrottledError(PowerBIError):
    """429 with a ``Retry-After`` longer than the client waits by itself, or still 429 after the
    allowed retries. ``retry_after_seconds`` says when to try again."""


class PowerBIUnavailableError(PowerBIError):
    """No usable answer: timeout, connection failure, or a 5xx that outlived the retries."""


class PowerBIProtocolError(PowerBIError):
    """The service answered with a body this client does not understand (not JSON, fields
    missing or of the wrong type)."""


# --- Azure Resource Manager: capacities ---------------------------------------------------------
# Each carries what a page needs to say it in its own words (``capacity_name``, …); ``message``
# is a complete English sentence for logs and for callers that show it as it is.


class _CapacityError(PowerBIError):
    """An ARM refusal about one capacity; mixed in before the kind of refusal it is."""

    def __init__(
        self,
        message: str,
        *,
        capacity_name: str,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(
            message,
            status=status,
            code=code,
            request_id=request_id,
            retry_after_seconds=retry_after_seconds,
        )
        self.capacity_name = capacity_name


class CapacityPermissionError(_CapacityError, PowerBIForbiddenError):
    """403 from ARM: the service principal lacks the Azure role the call needs on the capacity.
    ``required_role`` is ``Reader`` to read its state and ``Contributor`` to suspend, resume
    or change its SKU."""

    def __init__(
        self, message: str, *, capacity_name: str, required_role: str, **details: Any
    ) -> None:
        super().__init__(message, capacity_name=capacity_name, **details)
        self.required_role = required_role


class CapacityNotFoundError(_CapacityError, PowerBINotFoundError):
    """404 from ARM: no capacity of that provider at that subscription, resource group and
    name (or the service principal cannot see the subscription)."""


class CapacityOperationInProgressError(_CapacityError):
    """409 from ARM: another operation (suspend, resume, a SKU change) is still running on the
    capacity; try again once it has finished."""


class CapacityOperationTimeoutError(PowerBIUnavailableError):
    """A suspend, resume or SKU change was still not finished when the client stopped waiting
    (``timeout_seconds``). Azure may still complete it; ``last_state`` is the state last seen
    (None when it was never read)."""

    def __init__(
        self,
        message: str,
        *,
        capacity_name: str,
        timeout_seconds: float,
        last_state: str | None = None,
    ) -> None:
        super().__init__(message, code="OperationTimedOut")
        self.capacity_name = capacity_name
        self.timeout_seconds = timeout_seconds
        self.last_state = last_state
