"""Fault injection: throttling, outages, slow answers and dropped connections, as a client meets them."""

from __future__ import annotations

import anyio
import httpx2
import pytest

from sandbox import Fault, Sandbox

from .support import api, auth, error_of


async def test_throttling_answers_429_with_retry_after_and_the_service_protection_error(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    sandbox.faults.add(Fault(status=429, retry_after=2, count=2))
    for _ in range(2):
        response = await http.get(api(sandbox) + "/accounts?$top=1", headers=auth(sandbox))
        status, code, message = error_of(response)
        assert (status, code) == (429, "0x80072322")
        assert "Number of requests exceeded the limit" in message
        assert response.headers["retry-after"] == "2"
    assert (await http.get(api(sandbox) + "/accounts?$top=1", headers=auth(sandbox))).status_code == 200


async def test_a_503_is_answered_without_running_the_request(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    sandbox.faults.add(Fault(status=503, count=1, method="POST"))
    response = await http.post(api(sandbox) + "/accounts", json={"name": "Lost in outage"}, headers=auth(sandbox))
    assert response.status_code == 503
    found = await http.get(
        api(sandbox) + "/accounts?$count=true&$filter=name eq 'Lost in outage'", headers=auth(sandbox)
    )
    assert found.json()["@odata.count"] == 0


async def test_a_failure_after_commit_keeps_the_write(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    sandbox.faults.add(Fault(kind="after", status=503, count=1, method="POST"))
    response = await http.post(api(sandbox) + "/accounts", json={"name": "Committed anyway"}, headers=auth(sandbox))
    assert response.status_code == 503
    found = await http.get(
        api(sandbox) + "/accounts?$count=true&$filter=name eq 'Committed anyway'", headers=auth(sandbox)
    )
    assert found.json()["@odata.count"] == 1


async def test_a_fraction_of_requests_fails_repeatably(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    sandbox.faults.add(Fault(status=429, fraction=0.3, count=None))
    statuses = [(await http.get(api(sandbox) + "/WhoAmI", headers=auth(sandbox))).status_code for _ in range(60)]
    throttled = statuses.count(429)
    assert set(statuses) == {200, 429}
    assert 8 <= throttled <= 30


async def test_a_slow_answer_trips_a_client_read_timeout(sandbox: Sandbox) -> None:
    sandbox.faults.add(Fault(kind="delay", delay=2.0, count=1))
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(5, read=0.2)) as client:
        with pytest.raises(httpx2.ReadTimeout):
            await client.get(api(sandbox) + "/WhoAmI", headers=auth(sandbox))


@pytest.mark.parametrize(("kind", "written"), [("drop", 0), ("drop_after", 1)])
async def test_a_dropped_connection_reaches_the_client_as_a_transport_error(
    sandbox: Sandbox, http: httpx2.AsyncClient, kind: str, written: int
) -> None:
    sandbox.faults.add(Fault(kind=kind, count=1, method="POST"))  # type: ignore[arg-type]
    with pytest.raises(httpx2.TransportError):
        await http.post(api(sandbox) + "/accounts", json={"name": f"Dropped {kind}"}, headers=auth(sandbox))
    found = await http.get(
        api(sandbox) + f"/accounts?$count=true&$filter=name eq 'Dropped {kind}'", headers=auth(sandbox)
    )
    assert found.json()["@odata.count"] == written


async def test_faults_are_set_and_cleared_over_http(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    control = sandbox.environments["contoso"].url + "/_sandbox/faults"
    created = await http.post(control, json={"status": 503, "count": 5, "path": "WhoAmI"})
    assert created.status_code == 201
    assert (await http.get(api(sandbox) + "/WhoAmI", headers=auth(sandbox))).status_code == 503
    assert (await http.get(api(sandbox) + "/accounts?$top=1", headers=auth(sandbox))).status_code == 200
    assert (await http.delete(control)).status_code == 204
    assert (await http.get(api(sandbox) + "/WhoAmI", headers=auth(sandbox))).status_code == 200
    refused = await http.post(control, json={"stauts": 503})
    assert refused.status_code == 400
    assert "stauts" in refused.json()["error"]


async def test_the_request_log_records_who_called_without_the_token(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    token = sandbox.token("alice")
    await http.get(api(sandbox) + "/WhoAmI", headers={"Authorization": f"Bearer {token}"})
    records = (await http.get(sandbox.environments["contoso"].url + "/_sandbox/requests")).json()
    assert records[-1]["object_id"] == "a0000000-0000-4000-8000-000000000002"
    assert token not in str(records)
    assert records[-1]["token_sha256"]


async def test_a_slow_write_runs_even_after_the_client_gave_up(sandbox: Sandbox) -> None:
    sandbox.faults.add(Fault(kind="delay", delay=0.5, count=1, method="POST"))
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(5, read=0.1)) as client:
        with pytest.raises(httpx2.ReadTimeout):
            await client.post(api(sandbox) + "/accounts", json={"name": "Slow but sure"}, headers=auth(sandbox))
        with anyio.fail_after(5):
            await sandbox.request_log.wait_until(lambda records: any(record.method == "POST" for record in records))
        found = await client.get(
            api(sandbox) + "/accounts?$count=true&$filter=name eq 'Slow but sure'", headers=auth(sandbox)
        )
    assert found.json()["@odata.count"] == 1


async def test_expired_tokens_are_refused_and_new_ones_accepted(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    used = auth(sandbox)
    assert (await http.get(api(sandbox) + "/WhoAmI", headers=used)).status_code == 200
    sandbox.expire_tokens()
    status, _, message = error_of(await http.get(api(sandbox) + "/WhoAmI", headers=used))
    assert (status, message) == (401, "The access token has expired.")
    assert (await http.get(api(sandbox) + "/WhoAmI", headers=auth(sandbox))).status_code == 200


async def test_a_restarted_sandbox_serves_the_same_data_at_the_same_urls(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    urls = {name: environment.url for name, environment in sandbox.environments.items()}
    headers = auth(sandbox)
    created = await http.post(api(sandbox) + "/accounts", json={"name": "Survives a restart"}, headers=headers)
    await sandbox.stop()
    with pytest.raises(httpx2.ConnectError):
        await http.get(api(sandbox) + "/WhoAmI", headers=headers)
    await sandbox.start()
    assert {name: environment.url for name, environment in sandbox.environments.items()} == urls
    found = await http.get(created.headers["odata-entityid"] + "?$select=name", headers=headers)
    assert found.json()["name"] == "Survives a restart"
