"""Failures as tool results: what failed, Dataverse's code and message, what was written, what to do next.

Never a trace. A write tool's failure always says what was and was not written: the client says it for the
write request itself; anything that fails before that request wrote nothing.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from dataverse import NOTHING_WRITTEN, DataverseError, TableMetadata


@contextmanager
def reported_as_tool_errors(*, writing: bool = False) -> Iterator[None]:
    """Turn the client's errors and unknown-environment look-ups into `is_error` tool results.

    `writing`: the tool writes, so its message says what was written (nothing, unless the client says more).
    """
    try:
        yield
    except DataverseError as error:
        if writing and error.written is None:
            error.written = NOTHING_WRITTEN
        raise ToolError(str(error)) from None
    except LookupError as error:
        raise ToolError(_saying_written(str(error.args[0] if error.args else error), writing)) from None
    except ToolError as error:
        raise ToolError(_saying_written(str(error), writing)) from None


def _saying_written(message: str, writing: bool) -> str:
    return f"{message} {NOTHING_WRITTEN}" if writing else message


def closest(name: str, candidates: Sequence[str]) -> list[str]:
    return difflib.get_close_matches(name.lower(), [candidate.lower() for candidate in candidates], n=3, cutoff=0.6)


def unknown_columns(table: TableMetadata, names: Sequence[str]) -> ToolError:
    """'no column "revnue" on account; did you mean "revenue"?'"""
    parts = []
    for name in names:
        suggestions = closest(name, list(table.columns))
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        parts.append(f"no column {name!r} on {table.logical_name}{hint}")
    text = ". ".join(parts)
    return ToolError(text[:1].upper() + text[1:] + ". Use describe_table to see the columns.")
