"""Concurrent token requests of one scope share one call to the identity provider, and never share a failure."""

from __future__ import annotations

import anyio

from auth import AuthError, Authority, ClientSecretCredential
from sandbox import Sandbox

INTEGRATION_APP = "c0000000-0000-4000-8000-000000000001"


async def test_each_concurrent_caller_gets_its_own_sign_in_error_and_the_next_call_asks_again(
    sandbox: Sandbox,
) -> None:
    credential = ClientSecretCredential(
        INTEGRATION_APP,
        "not-the-secret",
        Authority(sandbox.identity.base_url, sandbox.authority.rsplit("/", 1)[1]),
        ca_bundle=str(sandbox.ca_file),
    )
    scope = f"{sandbox.environments['contoso'].url}/.default"
    errors: list[AuthError] = []

    async def ask() -> None:
        try:
            await credential.token(scope)
        except AuthError as error:
            errors.append(error)

    try:
        before = sandbox.identity.requests
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(ask)
        together = sandbox.identity.requests - before
        await ask()
        again = sandbox.identity.requests - before - together
    finally:
        credential.close()
    assert (together, again) == (1, 1)
    assert len({id(error) for error in errors}) == 6
    assert {(type(error), str(error)) for error in errors} == {(AuthError, str(errors[0]))}
    assert "client secret is wrong" in str(errors[0])
