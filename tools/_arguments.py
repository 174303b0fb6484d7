"""Argument types shared by the tools: the names assistants see are fixed (see the design's Tools section)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import Field

# The server's instructions explain environment and table once, rather than in every tool's schema again.
EnvironmentName = str | None
TableName = str
RowId = uuid.UUID  # "format": "uuid" in the schema says what it is
RowIdOrNone = Annotated[uuid.UUID | None, Field(description="Row GUID, or give key")]
AlternateKey = Annotated[
    dict[str, str | int] | None,
    Field(description='Alternate key, e.g. {"accountnumber": "A-1"}'),
]
Columns = Annotated[
    list[str] | str | None,
    Field(description="Column logical names; omit for all"),
]
Values = Annotated[
    dict[str, Any],
    Field(description='By logical name; lookup {"table":"account","id":"<guid>"}; choice value or label'),
]
Etag = Annotated[str | None, Field(description="Fail if the row changed since")]
