"""The load benchmark's own parts: the raw HTTP/1.1 client frames answers and counts failures,
and the anchor signs a JWT that verifies. Behaviour only, no timings."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json

import pytest
from fastapi.testclient import TestClient

from bench.anchor_app import app as anchor_app
from bench.anchor_app import sign_hs256
from bench.loadgen import Call, Target, read_response, run_closed_loop

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_anchor_signs_a_verifiable_hs256_jwt() -> None:
    token = sign_hs256({"sub": "x", "exp": 1}, key=b"k" * 32)
    header, payload, signature = token.split(".")
    assert json.loads(_unb64(header)) == {"alg": "HS256", "typ": "JWT"}
    assert json.loads(_unb64(payload)) == {"sub": "x", "exp": 1}
    expected = hmac.new(b"k" * 32, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert _unb64(signature) == expected


def test_anchor_answers_a_token_per_request() -> None:
    with TestClient(anchor_app) as client:
        first = client.post("/api/reports/r1/token", json={"reason": "load"})
        second = client.post("/api/reports/r1/token", json={"reason": "load"})
    assert first.status_code == second.status_code == 200
    assert first.json()["token"] != second.json()["token"]


async def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_reads_length_framed_and_chunked_answers() -> None:
    framed = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    assert await read_response(await _reader(framed)) == (200, b"hi", True)
    chunked = (
        b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert await read_response(await _reader(chunked)) == (503, b"abcde", False)


async def test_closed_loop_counts_answers_and_failures() -> None:
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")  # the requests have no body
                served += 1
                if served == 3:  # one answer that never comes: a time-out
                    await asyncio.sleep(5)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    call = Call(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    seen: list[int] = []
    async with server:
        result = await run_closed_loop(
            targets=[Target("127.0.0.1", port)],
            calls=lambda i, n: call if n < 3 else None,
            callers=2,
            duration_seconds=None,
            timeout_seconds=0.5,
            on_answer=lambda i, n, status, body: seen.append(status),
        )
    assert result.calls == 6
    assert result.outcomes == {"200": 5, "timeout": 1}
    assert result.failures == 1 and seen == [200] * 5
    summary = result.summary()
    assert summary["calls"] == 6 and summary["p99Ms"] is not None
