"""An error's parts read as sentences: the service's message often lacks its final period."""

from __future__ import annotations

import uuid

import httpx2
import pytest

from dataverse import DataverseClient, NotFound, StaticTokenProvider, ValidationFailed, end_sentence
from sandbox import Sandbox

from .support import instant_retries


def client(sandbox: Sandbox, http: httpx2.AsyncClient) -> DataverseClient:
    retry, _ = instant_retries(max_attempts=1)
    return DataverseClient(http, sandbox.environments["contoso"].url, StaticTokenProvider(sandbox.token()), retry=retry)


async def test_a_read_of_a_missing_row_says_so_in_sentences(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    row_id = uuid.uuid4()
    with pytest.raises(NotFound) as raised:
        await client(sandbox, http).get("account", row_id)
    assert raised.value.message == f"account With Id = {row_id} Does Not Exist"  # as the service wrote it
    assert str(raised.value) == (
        f"Dataverse answered 404 (0x80040217): account With Id = {row_id} Does Not Exist. "
        "Check the id or key; the row may have been deleted or may not be visible to you."
    )


async def test_a_failed_write_says_what_was_written_in_its_own_sentence(
    sandbox: Sandbox, http: httpx2.AsyncClient
) -> None:
    row_id = uuid.uuid4()
    with pytest.raises(NotFound) as raised:
        await client(sandbox, http).delete("account", row_id)
    assert f"account With Id = {row_id} Does Not Exist. Nothing was written. Check the id" in str(raised.value)


async def test_a_refused_query_ends_each_sentence(sandbox: Sandbox, http: httpx2.AsyncClient) -> None:
    with pytest.raises(ValidationFailed) as raised:
        await client(sandbox, http).get("account", {"nosuchcolumn": "x"})
    text = str(raised.value)
    assert ".. " not in text and " . " not in text
    assert text.endswith(".")


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ("account With Id = 1 Does Not Exist", "account With Id = 1 Does Not Exist."),
        ("Nothing was written.", "Nothing was written."),
        ("Did you mean 'account'?", "Did you mean 'account'?"),
        ("No column 'revnue'", "No column 'revnue'."),
        ("It said 'stop.'", "It said 'stop.'"),
        ("  trailing space  ", "trailing space."),
        ("", ""),
    ],
)
def test_a_part_of_a_message_ends_as_a_sentence(text: str, sentence: str) -> None:
    assert end_sentence(text) == sentence
