"""A requests-compatible `http_client` for msal over httpx, for talking to a plain-http emulator.

msal accepts https authorities only. The test keeps msal's authority on
`https://127.0.0.1:PORT/TENANT`; this client sends requests for that origin to
`http://127.0.0.1:PORT`, and shows the emulator's `http://` URLs in discovery documents to
msal as `https://`, so msal's follow-up requests come back through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx


class MsalResponse:
    def __init__(self, status_code: int, text: str, headers: Mapping[str, str]) -> None:
        self.status_code = status_code
        self.text = text
        self.headers = dict(headers)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise httpx.HTTPStatusError(
                f"HTTP {self.status_code}",
                request=httpx.Request("GET", "https://emulator.invalid"),
                response=httpx.Response(self.status_code),
            )


class HttpsToHttpClient:
    def __init__(self, http_base_url: str) -> None:
        parts = urlsplit(http_base_url)
        assert parts.scheme == "http", http_base_url
        self.netloc = parts.netloc
        self.requests: list[tuple[str, str]] = []  # (method, URL msal asked for)
        self._client = httpx.Client(timeout=10)

    @property
    def https_origin(self) -> str:
        return f"https://{self.netloc}"

    def _route(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.netloc == self.netloc:
            return urlunsplit(("http", parts.netloc, parts.path, parts.query, parts.fragment))
        raise AssertionError(f"msal tried to reach another host: {url}")

    def _send(self, method: str, url: str, **kwargs: Any) -> MsalResponse:
        self.requests.append((method, url))
        response = self._client.request(method, self._route(url), **kwargs)
        text = response.text.replace(f"http://{self.netloc}", self.https_origin)
        return MsalResponse(response.status_code, text, response.headers)

    def get(self, url: str, params: Any = None, headers: Any = None, **kwargs: Any) -> MsalResponse:
        return self._send("GET", url, params=params, headers=headers)

    def post(
        self,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        **kwargs: Any,
    ) -> MsalResponse:
        return self._send("POST", url, params=params, data=data, headers=headers)

    def close(self) -> None:
        self._client.close()
