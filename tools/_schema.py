"""Compact JSON schemas for `tools/list`: every conversation pays for them before any work.

pydantic's schemas repeat a `title` on every property and spell an optional value as
`anyOf: [{...}, {"type": "null"}]` with `default: null`. The compact form keeps the same meaning
(`"type": ["string", "null"]`, no titles) in about half the bytes.
"""

from __future__ import annotations

import inspect
from typing import Any

from mcp.server.mcpserver.tools import Tool

_SIMPLE_KEYS = frozenset({"type", "items"})


def compact_schema(schema: Any, *, optional: bool = False, keep_null: bool = False) -> Any:
    """`schema` without titles; an optional property's `anyOf` of plain types becomes one type list,
    without `null` (leaving a property out means no value; tools still accept null)."""
    if isinstance(schema, list):
        return [compact_schema(item, keep_null=keep_null) for item in schema]
    if not isinstance(schema, dict):
        return schema
    compacted = {
        key: compact_schema(value, keep_null=keep_null)
        for key, value in schema.items()
        if key not in ("title", "properties")
    }
    if isinstance(schema.get("properties"), dict):
        required = set(schema.get("required", ()))
        compacted["properties"] = {
            name: compact_schema(value, optional=name not in required and not keep_null, keep_null=keep_null)
            for name, value in schema["properties"].items()
        }
    options = compacted.get("anyOf")
    if optional and isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        (other,) = [option for option in options if option != {"type": "null"}]
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
    if "default" in compacted and compacted["default"] is None:
        del compacted["default"]
    if compacted.get("additionalProperties") is True:
        del compacted["additionalProperties"]
    return compacted


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
    """The tool with compact input and output schemas and a tidy description.

    Only inputs drop `null` from optional properties; results do carry nulls, so their schemas keep them.
    """
    tool.description = " ".join(inspect.cleandoc(tool.description or "").split())
    tool.parameters = compact_schema(tool.parameters)
    output = tool.fn_metadata.output_schema
    if output is not None:
        tool.fn_metadata.output_schema = compact_schema(inline_definitions(output), keep_null=True)
    return tool
