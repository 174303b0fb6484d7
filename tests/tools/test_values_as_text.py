"""Numbers, yes/no values and choices given as strings are written when the conversion is exact."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from sandbox import Sandbox

from .support import server_for, structured

SELECT = ["numberofchildren", "creditlimit", "donotemail", "preferredcontactmethodcode"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ({"numberofchildren": "42"}, {"numberofchildren": 42}),
        ({"numberofchildren": " -0 "}, {"numberofchildren": 0}),
        ({"numberofchildren": "3.0"}, {"numberofchildren": 3}),
        ({"numberofchildren": 3.0}, {"numberofchildren": 3}),
        ({"creditlimit": "12.50"}, {"creditlimit": 12.5}),
        ({"creditlimit": "0.1"}, {"creditlimit": 0.1}),
        ({"donotemail": "true"}, {"donotemail": True}),
        ({"donotemail": " FALSE"}, {"donotemail": False}),
        ({"donotemail": "Do Not Allow"}, {"donotemail": True}),  # the column's own label
        ({"donotemail": "allow"}, {"donotemail": False}),
        ({"donotemail": 1}, {"donotemail": True}),  # the option's value, as describe_table lists it
        ({"preferredcontactmethodcode": "3"}, {"preferredcontactmethodcode": 3}),
        ({"preferredcontactmethodcode": "Phone"}, {"preferredcontactmethodcode": 3}),
    ],
)
async def test_a_value_given_as_text_is_written_as_its_exact_value(
    sandbox: Sandbox, given: dict[str, Any], stored: dict[str, Any]
) -> None:
    async with Client(server_for(sandbox)) as client:
        written = structured(
            await client.call_tool("create_record", {"table": "contact", "values": {"lastname": "Text", **given}})
        )
        arguments = {"table": "contact", "id": written["id"], "select": SELECT}
        row = structured(await client.call_tool("get_record", arguments))["row"]
    for name, value in stored.items():
        found = row[name][0] if isinstance(row[name], list) else row[name]  # a value with its label
        assert found == value, row
