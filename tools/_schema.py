"""Compact tools: compact JSON schemas for `tools/list`, compact JSON results for every call.

pydantic's schemas repeat a `title` on every property and spell an optional value as
`anyOf: [{...}, {"type": "null"}]` with `default: null`. The compact form keeps the same meaning
(`"type": ["string", "null"]`, no titles) in about half the bytes.

The MCP SDK writes a structured result's text copy as JSON indented by two spaces, about a quarter of its bytes;
a tool here hands the SDK a finished `CallToolResult` instead (`structured_result`), which the SDK still validates
against the published output schema.

Annotations leave out each hint that says what the MCP specification's default says (`readOnlyHint` false,
`destructiveHint` true, `idempotentHint` false, `openWorldHint` true), and a read-only tool's destructive and
idempotent hints, which the specification makes meaningful only when `readOnlyHint` is false: a client reads the
same hints from half the bytes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Final

from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations
from pydantic import BaseModel

from ._output import structured_result

_SIMPLE_KEYS = frozenset({"type", "items"})
# The MCP specification's defaults for a hint left out (schema of ToolAnnotations, 2025-06-18).
SPECIFIED_DEFAULTS: Final = {
    "read_only_hint": False,
    "destructive_hint": True,
    "idempotent_hint": False,
    "open_world_hint": True,
}


def compact_schema(schema: Any, *, optional: bool = False, result: bool = False) -> Any:
    """`schema` without titles; an optional property's `anyOf` of plain types becomes one type list,
    without `null` (leaving a property out means no value; tools still accept null).

    `result`: a result's schema. Results leave null fields out too, except a yes/no whose null means "unknown"
    (`structured_result`), so only those keep `null`. A result's schema says what its fields are, not which are
    always there (`required`) nor their defaults: a client validates results against it all the same, and every
    tools/list pays for the bytes.
    """
    if isinstance(schema, list):
        return [compact_schema(item, result=result) for item in schema]
    if not isinstance(schema, dict):
        return schema
    left_out = ("title", "properties", "required") if result else ("title", "properties")
    compacted = {key: compact_schema(value, result=result) for key, value in schema.items() if key not in left_out}
    if isinstance(schema.get("properties"), dict):
        required = set(schema.get("required", ()))
        compacted["properties"] = {
            name: compact_schema(value, optional=name not in required, result=result)
            for name, value in schema["properties"].items()
        }
    options = compacted.get("anyOf")
    if optional and isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        (other,) = [option for option in options if option != {"type": "null"}]
        if result and other == {"type": "boolean"}:
            optional = False  # null means "unknown" there: kept as a type below
        else:
            del compacted["anyOf"]
            compacted = {**other, **compacted}
            options = None
    if isinstance(options, list) and all(
        isinstance(o, dict) and set(o) <= _SIMPLE_KEYS and "type" in o for o in options
    ):
        types = [option["type"] for option in options if not (optional and option["type"] == "null")]
        items = [option["items"] for option in options if "items" in option]
        if len(items) <= 1:
            del compacted["anyOf"]
            compacted["type"] = types[0] if len(types) == 1 else types
            if items:
                compacted["items"] = items[0]
    if "default" in compacted and (compacted["default"] is None or result):
        del compacted["default"]  # a result's field has the value it has: a default says nothing there
    if compacted.get("additionalProperties") is True:
        del compacted["additionalProperties"]
    return compacted


def compact_annotations(hints: ToolAnnotations | None) -> ToolAnnotations | None:
    """`hints` without what a client assumes anyway; None when nothing is left."""
    if hints is None:
        return None
    kept = {
        name: value
        for name, value in hints.model_dump(exclude_none=True).items()
        if (name not in SPECIFIED_DEFAULTS or SPECIFIED_DEFAULTS[name] != value)
        and not (hints.read_only_hint and name in ("destructive_hint", "idempotent_hint"))
    }
    return ToolAnnotations(**kept) if kept else None


def effective_hints(hints: ToolAnnotations | None) -> dict[str, bool]:
    """What a client following the specification takes each hint to be."""
    given = hints.model_dump(exclude_none=True) if hints else {}
    return {name: bool(given.get(name, default)) for name, default in SPECIFIED_DEFAULTS.items()}


def inline_definitions(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with each `$ref` replaced by its definition (our result models are not recursive)."""
    definitions = schema.get("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        reference = node.get("$ref", "")
        if reference.startswith("#/$defs/"):
            return inline(definitions[reference.removeprefix("#/$defs/")])
        return {key: inline(value) for key, value in node.items() if key != "$defs"}

    result: dict[str, Any] = inline(schema)
    return result


def compact_tool(tool: Tool) -> Tool:
    """The tool with compact input and output schemas, a tidy description, and compact JSON results.

    Optional properties drop `null`, in results too, since results leave null fields out (but a yes/no).
    """
    tool.description = " ".join(inspect.cleandoc(tool.description or "").split())
    tool.annotations = compact_annotations(tool.annotations)
    tool.parameters = compact_schema(tool.parameters)
    output = tool.fn_metadata.output_schema
    if output is not None:
        tool.fn_metadata.output_schema = compact_schema(inline_definitions(output), result=True)
    model = tool.fn_metadata.output_model
    if output is not None and isinstance(model, type) and issubclass(model, BaseModel):
        tool.fn = _answering_compactly(tool.fn, model, is_async=tool.is_async)
    return tool


def _answering_compactly(function: Callable[..., Any], model: type[BaseModel], *, is_async: bool) -> Callable[..., Any]:
    """`function`, returning a `model` result as a finished `CallToolResult` (anything else as it is)."""
    if is_async:

        @functools.wraps(function)
        async def call_async(**arguments: Any) -> Any:
            result = await function(**arguments)
            return structured_result(result) if isinstance(result, model) else result

        return call_async

    @functools.wraps(function)
    def call(**arguments: Any) -> Any:  # the SDK runs it on a worker thread, as it would `function`
        result = function(**arguments)
        return structured_result(result) if isinstance(result, model) else result

    return call
