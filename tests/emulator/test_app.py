"""The app as a whole: health, request ids, isolation, import hygiene, and the CLI."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from tests.emulator.harness import Emulator, running_emulator
from tests.support.servers import embedportal_process, free_port


def test_healthz_and_request_ids(shared_emulator: Emulator) -> None:
    response = shared_emulator.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    ids = set()
    for path in ("/healthz", "/v1.0/myorg/groups", "/nowhere", "/emulator/api/stats"):
        answer = shared_emulator.http.get(path)
        ids.add(uuid.UUID(answer.headers["RequestId"]))
        assert answer.headers["content-type"].startswith("application/json")
    assert len(ids) == 4


def test_apps_do_not_share_state() -> None:
    with running_emulator() as first, running_emulator() as second:
        first.access_token()
        assert first.stats()["entraTokensIssued"] == 1
        assert second.stats()["entraTokensIssued"] == 0
        token = first.access_token()
        refused = second.http.get(
            "/v1.0/myorg/groups", headers={"Authorization": f"Bearer {token}"}
        )
        assert refused.status_code == 403


def test_importing_builds_nothing() -> None:
    code = (
        "import embedportal.emulator.app, embedportal.emulator.demo as d;"
        "assert d.demo_content.cache_info().currsize == 0;"
        "assert d.sales_table.cache_info().currsize == 0"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_cli_serves_the_emulator(tmp_path: Path) -> None:
    port = free_port()
    with embedportal_process(
        ["emulator", "--port", str(port)],
        port=port,
        env={"EMBEDPORTAL_EMULATOR_CAPACITY_TRANSITION_SECONDS": "0"},
        log_dir=tmp_path,
        health_path="/healthz",
    ) as server:
        assert httpx.get(f"{server.base_url}/healthz").json() == {"status": "ok"}
        token = httpx.post(
            f"{server.base_url}/00000000-0000-0000-0000-0000000e0001/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "00000000-0000-0000-0000-0000000e0002",
                "client_secret": "embedportal-emulator-secret",
                "scope": "https://analysis.windows.net/powerbi/api/.default",
            },
        )
        assert token.status_code == 200
        log = server.log()
    assert "embedportal-emulator-secret" in log  # the start-up lines tell newcomers the secret
    assert "embedportaldemo" in log
