"""Failures as tool results: what failed, Dataverse's code and message, what was written, what to do next.

Never a trace. A write tool's failure always says what was and was not written: the client says it for the
write request itself; anything that fails before that request wrote nothing. An argument that does not fit
the tool's schema gets one sentence (the argument, the value received, what is allowed), not pydantic's
report; a value is quoted cut short, never whole.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, cast

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from pydantic import ConfigDict, ValidationError

from dataverse import NOTHING_WRITTEN, DataverseError, TableMetadata, end_sentence

MAX_SHOWN: Final = 60  # characters of a value quoted back in a message
_FIELD_NAME: Final = re.compile(r"^[A-Za-z_]\w*$")
_TYPE_WORDS: Final = {"integer": "a whole number", "number": "a number", "boolean": "true or false"}
_FORMAT_WORDS: Final = {"uuid": "a GUID", "date-time": "an ISO 8601 date and time", "date": "an ISO 8601 date"}
_PLURALS: Final = {"a string": "strings", "a whole number": "whole numbers", "a number": "numbers", "a GUID": "GUIDs"}
_MISSING: Final = object()


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
    return f"{end_sentence(message)} {NOTHING_WRITTEN}" if writing else message


def shown(value: Any) -> str:
    """`value` as a message quotes it: a string in quotes, anything else as JSON; cut when long."""
    if isinstance(value, str):
        return repr(value if len(value) <= MAX_SHOWN else f"{value[:MAX_SHOWN]}…")
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}…"


def closest(name: str, candidates: Sequence[str]) -> list[str]:
    return difflib.get_close_matches(name.lower(), [candidate.lower() for candidate in candidates], n=3, cutoff=0.6)


def unknown_columns(table: TableMetadata, names: Sequence[str]) -> ToolError:
    """'no column "revnue" on account; did you mean "revenue"?'"""
    parts = []
    for name in names:
        suggestions = closest(name, list(table.columns))
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        parts.append(f"no column {name!r} on {table.logical_name}{hint}")
    text = end_sentence(". ".join(parts))
    return ToolError(text[:1].upper() + text[1:] + " Use describe_table to see the columns.")


class CheckedTool(Tool):
    """A tool whose argument mistakes come back as one sentence each, and which refuses an argument it does not
    take (pydantic would drop it silently, and the call would run without what the caller meant)."""

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        model = self.fn_metadata.arg_model
        namespace = {"model_config": ConfigDict(extra="forbid"), "__module__": model.__module__}
        self.fn_metadata.arg_model = cast(type[ArgModelBase], type(model.__name__, (model,), namespace))

    async def run(self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False) -> Any:
        try:
            return await super().run(arguments, context, convert_result)
        except ToolError as error:
            invalid = error.__cause__
            if not isinstance(invalid, ValidationError) or isinstance(error, UnexpectedToolError):
                raise
            problems = _argument_problems(self, self.fn_metadata.pre_parse_json(arguments), invalid)
            writing = not (self.annotations and self.annotations.read_only_hint)
            # From the ValidationError still: the server then logs the argument names, not the values.
            raise ToolError(f"Error executing tool {self.name}: {_saying_written(problems, writing)}") from invalid


def _argument_problems(tool: Tool, arguments: dict[str, Any], invalid: ValidationError) -> str:
    """One sentence per argument (or part of one) that does not fit the tool's schema."""
    schema = tool.fn_metadata.arg_model.model_json_schema(by_alias=True)
    unknown: dict[str, tuple[_Place, list[str]]] = {}  # names a place does not take, by that place's path
    problems: dict[str, str] = {}
    for error in invalid.errors():
        if error["type"] == "extra_forbidden":
            owner = _Place.of(error["loc"][:-1], arguments, schema)
            unknown.setdefault(owner.path, (owner, []))[1].append(str(error["loc"][-1]))
            continue
        place = _Place.of(error["loc"], arguments, schema)
        if place.path in problems:
            continue  # another member of the same union: one sentence says what the argument may be
        if error["type"] == "missing":
            problems[place.path] = f"{place.path} is required: give {_allowed(place.schema, schema)}."
        elif error["type"] in ("value_error", "assertion_error"):
            problems[place.path] = end_sentence(f"{place.path}: {str(error['msg']).removeprefix('Value error, ')}")
        else:
            value = error.get("input") if place.value is _MISSING else place.value
            problems[place.path] = f"{place.path} must be {_allowed(place.schema, schema)}, not {shown(value)}."
    # A union's members fail at different depths (`select: [5]` is neither a string nor a list of strings);
    # the member that got deeper matched the shape, so its problem is the one to fix.
    deepest = [text for path, text in problems.items() if not any(_within(other, path) for other in problems)]
    sentences = [_unknown_names(tool.name, owner, names, schema) for owner, names in unknown.values()]
    return " ".join(sentences + deepest)


def _within(path: str, ancestor: str) -> bool:
    return path.startswith((f"{ancestor}.", f"{ancestor}[")) if ancestor else bool(path)


def _unknown_names(tool: str, owner: _Place, names: list[str], schema: dict[str, Any]) -> str:
    """'query_records takes no argument 'filters' (did you mean 'filter'?); its arguments are: table, ...'"""
    known = list(_properties(owner.schema, schema))
    listed = []
    for name in names:
        suggestions = closest(name, known)[:1]
        listed.append(shown(name) + (f" (did you mean {suggestions[0]!r}?)" if suggestions else ""))
    subject, noun = (f"{owner.path} has", "field") if owner.path else (f"{tool} takes", "argument")
    if not known:
        return f"{subject} no {noun}s: leave out {' and '.join(listed)}."
    return f"{subject} no {noun} {' or '.join(listed)}; its {noun}s are: {', '.join(known)}."


@dataclass(frozen=True)
class _Place:
    """Where in the arguments an error is: the path as the caller wrote it, the value there, its schema."""

    path: str
    value: Any
    schema: dict[str, Any]

    @classmethod
    def of(cls, location: Sequence[Any], arguments: Any, schema: dict[str, Any]) -> _Place:
        # pydantic also names the member of a union it tried (`list[str]`, `str`): not a step into the value.
        path, value, node = "", arguments, schema
        for part in location:
            if isinstance(part, int) and isinstance(value, list) and 0 <= part < len(value):
                path, value = f"{path}[{part}]", value[part]
            elif isinstance(part, str) and isinstance(value, dict) and part in value:
                path, value = _joined(path, part), value[part]
            elif isinstance(part, str) and part in _properties(node, schema):
                path, value = _joined(path, part), _MISSING
            else:
                continue
            node = _child(node, part, schema)
        return cls(path, value, node)


def _joined(path: str, name: str) -> str:
    if not _FIELD_NAME.match(name):
        return f"{path}[{shown(name)}]"
    return f"{path}.{name}" if path else name


def _resolved(node: Any, schema: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(node, dict):
        return {}
    reference = node.get("$ref", "")
    if isinstance(reference, str) and reference.startswith("#/$defs/"):
        return _resolved(schema.get("$defs", {}).get(reference.removeprefix("#/$defs/")), schema)
    return node


def _options(node: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema's alternatives (itself if it has none), without null: leaving a value out is always allowed."""
    options = node.get("anyOf") or node.get("oneOf")
    if not isinstance(options, list):
        return [node]
    resolved = [_resolved(option, schema) for option in options]
    return [option for option in resolved if option.get("type") != "null"] or resolved


def _properties(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for option in _options(_resolved(node, schema), schema):
        properties = option.get("properties")
        if isinstance(properties, dict):
            found.update(properties)
    return found


def _child(node: dict[str, Any], part: str | int, schema: dict[str, Any]) -> dict[str, Any]:
    for option in _options(_resolved(node, schema), schema):
        if isinstance(part, int) and isinstance(option.get("items"), dict):
            return _resolved(option["items"], schema)
        if isinstance(part, str):
            properties = option.get("properties")
            if isinstance(properties, dict) and part in properties:
                return _resolved(properties[part], schema)
            if isinstance(option.get("additionalProperties"), dict):
                return _resolved(option["additionalProperties"], schema)
    return {}


def _allowed(node: dict[str, Any], schema: dict[str, Any]) -> str:
    """What a schema accepts, in words: "a whole number from 1 to 500", "a GUID", "one of 'a', 'b'"."""
    node = _resolved(node, schema)
    words = [_kind(option, schema) for option in _options(node, schema)]
    text = " or ".join(dict.fromkeys(word for word in words if word)) or "a value its schema allows"
    description = str(node.get("description") or "")
    return f"{text}, e.g. {description.partition('e.g. ')[2]}" if "e.g. " in description else text


def _kind(node: dict[str, Any], schema: dict[str, Any]) -> str:
    if "enum" in node:
        return "one of " + ", ".join(shown(value) for value in node["enum"])
    if "const" in node:
        return shown(node["const"])
    if "anyOf" in node or "oneOf" in node:
        return _allowed(node, schema)
    types = node.get("type")
    words = []
    for kind in [types] if isinstance(types, str) else list(types or ()):
        if kind == "string":
            words.append(_FORMAT_WORDS.get(str(node.get("format")), "a string"))
        elif kind == "array":
            items = _resolved(node.get("items"), schema)
            item = _kind(items, schema) if items else ""
            plural = _PLURALS.get(item)
            words.append(f"a list of {plural}" if plural else f"a list ({item} each)" if item else "a list")
        elif kind == "object":
            fields = list(_properties(node, schema))
            words.append(f"an object with {', '.join(fields)}" if fields else "an object")
        elif kind != "null":
            words.append(_TYPE_WORDS.get(kind, f"a {kind}"))
    return " or ".join(words) + _bounds(node)


def _bounds(node: dict[str, Any]) -> str:
    for low_key, high_key, unit in (("minimum", "maximum", ""), ("minLength", "maxLength", " characters")):
        low, high = node.get(low_key), node.get(high_key)
        if low is not None and high is not None:
            return f" from {low} to {high}{unit}"
        if low is not None:
            return f" of at least {low}{unit}"
        if high is not None:
            return f" of at most {high}{unit}"
    return ""
