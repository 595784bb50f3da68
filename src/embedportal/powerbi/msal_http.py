"""A small requests-compatible HTTP client for msal, built on httpx.

msal accepts any object with ``get`` / ``post`` / ``close`` whose responses have ``status_code``,
``text``, ``headers`` and ``raise_for_status()``. We give it this one so that

* Entra calls share httpx's timeouts and transports with the rest of the package (and tests can
  plug in an ``httpx.MockTransport``);
* an ``http://`` authority (the local emulator) works although msal insists on ``https://``:
  msal is configured with ``https://<same host:port>/<tenant>`` and this client sends requests for
  that origin to the configured ``http://`` origin instead. Discovery documents returned by that
  origin may advertise ``http://`` endpoints; they are presented to msal as ``https://`` so msal
  keeps routing them through here.

Nothing here logs request or response bodies: token responses carry secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx


class MsalHttpError(Exception):
    """Raised by :meth:`MsalHttpResponse.raise_for_status` for 4xx/5xx answers."""

    def __init__(self, status_code: int, url: str) -> None:
        super().__init__(f"HTTP {status_code} from {url}")
        self.status_code = status_code
        self.url = url


class MsalHttpResponse:
    """The response shape msal reads (a subset of ``requests.Response``)."""

    def __init__(self, status_code: int, text: str, headers: Mapping[str, str], url: str) -> None:
        self.status_code = status_code
        self.text = text
        self.headers: dict[str, str] = dict(headers)
        self.url = url

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise MsalHttpError(self.status_code, self.url)

    def __repr__(self) -> str:
        return f"<MsalHttpResponse {self.status_code} {self.url}>"


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class MsalHttpClient:
    """requests-like facade over a synchronous ``httpx.Client``.

    ``http_origin``: when set (``http://host:port``), requests for ``https://host:port`` go there.
    """

    def __init__(
        self,
        *,
        http_origin: str | None = None,
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._facade_netloc: str | None = None
        self._http_origin: str | None = None
        if http_origin is not None:
            scheme, netloc = _origin(http_origin)
            if scheme != "http" or not netloc:
                raise ValueError(f"http_origin must be http://host[:port], got {http_origin!r}")
            self._facade_netloc = netloc
            self._http_origin = f"http://{netloc}"
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout), transport=transport, follow_redirects=False
        )
        self.last_status: int | None = None
        self.last_headers: dict[str, str] = {}

    @property
    def facade_origin(self) -> str | None:
        """``https://host:port`` that msal is told to use, when redirecting to http."""
        return f"https://{self._facade_netloc}" if self._facade_netloc else None

    def _route(self, url: str) -> tuple[str, bool]:
        """The URL to really call, and whether it is the redirected origin."""
        if self._facade_netloc is None:
            return url, False
        parts = urlsplit(url)
        if parts.netloc.lower() == self._facade_netloc and parts.scheme.lower() in (
            "https",
            "http",
        ):
            return urlunsplit(("http", parts.netloc, parts.path, parts.query, parts.fragment)), True
        return url, False

    def _present(self, text: str) -> str:
        """Show http:// endpoints of the redirected origin to msal as https://."""
        assert self._http_origin is not None and self._facade_netloc is not None
        return text.replace(self._http_origin, f"https://{self._facade_netloc}").replace(
            self._http_origin.replace("/", "\\/"), f"https:\\/\\/{self._facade_netloc}"
        )

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: Any = None,
    ) -> MsalHttpResponse:
        target, redirected = self._route(url)
        request_headers = {k: v for k, v in (headers or {}).items() if v is not None}
        kwargs: dict[str, Any] = {"params": params, "headers": request_headers}
        if isinstance(data, (str, bytes)):
            kwargs["content"] = data
        elif data is not None:
            kwargs["data"] = {k: v for k, v in dict(data).items() if v is not None}
        if isinstance(timeout, (int, float)):
            kwargs["timeout"] = float(timeout)
        elif isinstance(timeout, tuple) and len(timeout) == 2:  # requests' (connect, read)
            kwargs["timeout"] = httpx.Timeout(timeout[1], connect=timeout[0])
        response = self._client.request(method, target, **kwargs)
        text = response.text
        if redirected and method == "GET":
            text = self._present(text)
        self.last_status = response.status_code
        self.last_headers = {k.lower(): v for k, v in response.headers.items()}
        return MsalHttpResponse(response.status_code, text, self.last_headers, url)

    def get(
        self,
        url: str,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> MsalHttpResponse:
        return self._send("GET", url, params=params, headers=headers, timeout=kwargs.get("timeout"))

    def post(
        self,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> MsalHttpResponse:
        return self._send(
            "POST", url, params=params, data=data, headers=headers, timeout=kwargs.get("timeout")
        )

    def close(self) -> None:
        self._client.close()
