"""Failures as tool results: what failed, Dataverse's code and message, what to do next; never a trace."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from dataverse import DataverseError, TableMetadata


@contextmanager
def reported_as_tool_errors() -> Iterator[None]:
    """Turn the client's errors and unknown-environment look-ups into `is_error` tool results."""
    try:
        yield
    except DataverseError as error:
        raise ToolError(str(error)) from None
    except LookupError as error:
        raise ToolError(str(error.args[0] if error.args else error)) from None


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
