"""Paging cursors the server owns: opaque, short, authenticated, bound to one caller and one tool, expiring.

A cursor is what a model copies back to get the next page, so it is treated as untrusted input. Its state
(environment, table, the query's arguments, where the next page starts) is signed with HMAC-SHA256 under a key
only the server holds, with the caller's id and the tool's name mixed into the signature: a cursor edited by one
character, replayed by another user or passed to another tool does not open. The state is deflated with a preset
dictionary of what states repeat; state still too long for a short cursor (a long filter or FetchXML) stays in a
bounded in-process store and the cursor carries a random reference to it, so cursors stay under 200 characters.

    cursor = base64url(version | expiry (4 bytes) | flags | payload | tag (12 bytes))
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import struct
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from mcp.server.mcpserver.exceptions import ToolError

VERSION: Final = 1  # a new version for a new dictionary: old cursors then fail cleanly
TAG_BYTES: Final = 12  # a 96-bit HMAC tag: forging one takes 2^96 guesses, and each guess is a tool call
MAX_CURSOR_CHARS: Final = 196  # a model copies it back: keep it under 200
DEFLATED: Final = 1
STORED: Final = 2
_HEADER: Final = struct.Struct(">BIB")  # version, expiry (unix seconds), flags
# What a state usually repeats: its keys, FetchXML's elements, paging cookies as the Web API writes them. Deflate
# with this preset dictionary keeps a plain query's state with its paging cookie inside the cursor itself (so any
# replica sharing the key can open it), where without it the state would have to stay in the store.
_DICTIONARY: Final = (
    b'{"e":"contoso","t":"account","a":{"select":["name","'
    b"\"fetchxml\":\"<fetch><entity name=''><attribute name=''/><link-entity name='' from='' to='' alias=''>"
    b"</link-entity><filter type='and'><condition attribute='' operator='eq' value=''/></filter>"
    b"<order attribute='' descending='true'/></entity></fetch>\","
    b'"filter":" eq \'\' and ","orderby":" desc","top":,"expand":["(","count":true,"page_size":'
    b'<cookie page=\\"1\\"><id last=\\"{\\" first=\\"{}\\" /></cookie>'
    b'"p":["<cookie pagenumber=\\"2\\" pagingcookie=\\"%253Ccookie%2520page%253D%25221%2522%253E%253Cid%2520last%253D'
    b'%2522%257B%257D%2522%2520first%253D%2522%257B%257D%2522%2520%252F%253E%253C%252Fcookie%253E\\" '
    b'istracking=\\"False\\" />",2,50],"s":0}'
)
NOT_VALID: Final = (
    "That cursor is not valid here: pass back the cursor exactly as the last result gave it, "
    "or run the query again without it."
)


class CursorExpired(ToolError):
    """A cursor (or token) past its expiry: genuine, but too old to open."""


class Cursors:
    """Seals paging state into cursors and opens them again, for one server process (or its replicas)."""

    def __init__(
        self,
        key: bytes,
        *,
        lifetime: float = 3600.0,
        stored_max: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = hashlib.sha256(b"dynamics-mcp cursor key\0" + key).digest()
        self.lifetime = lifetime
        self.stored_max = stored_max
        self.clock = clock
        self._stored: OrderedDict[bytes, bytes] = OrderedDict()

    @classmethod
    def with_new_key(cls) -> Cursors:
        """Cursors signed with a key made for this process: they do not outlive it."""
        return cls(secrets.token_bytes(32))

    def seal(self, state: dict[str, Any], *, caller: str, tool: str, lifetime: float | None = None) -> str:
        """A cursor for `state` that only `caller` can open, in `tool`, until it expires (after `lifetime`
        seconds, or the default)."""
        payload = json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode()
        flags = 0
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=_DICTIONARY)
        deflated = compressor.compress(payload) + compressor.flush()
        if len(deflated) < len(payload):
            payload, flags = deflated, DEFLATED
        expiry = int(self.clock() + (self.lifetime if lifetime is None else lifetime))
        cursor = self._sign(expiry, flags, payload, caller, tool)
        if len(cursor) > MAX_CURSOR_CHARS:
            reference = secrets.token_bytes(12)
            self._stored[reference] = _HEADER.pack(VERSION, expiry, flags) + payload
            while len(self._stored) > self.stored_max:
                self._stored.popitem(last=False)
            cursor = self._sign(expiry, STORED, reference, caller, tool)
        return cursor

    def open(self, cursor: str, *, caller: str, tool: str) -> dict[str, Any]:
        """The state sealed in `cursor`; a tool error if it was altered, is someone else's, or expired."""
        text = cursor.strip()
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (ValueError, TypeError):
            raise ToolError(NOT_VALID) from None
        # Only the one spelling this server writes: the last character's unused bits cannot be edited either.
        if len(raw) < _HEADER.size + TAG_BYTES or base64.urlsafe_b64encode(raw).decode().rstrip("=") != text:
            raise ToolError(NOT_VALID)
        body, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(body, caller, tool)):
            raise ToolError(NOT_VALID)
        version, expiry, flags = _HEADER.unpack_from(body)
        payload = body[_HEADER.size :]
        if version != VERSION:
            raise ToolError(NOT_VALID)
        if self.clock() > expiry:
            raise CursorExpired("That cursor has expired: run the query again without it.")
        if flags == STORED:
            stored = self._stored.get(payload)
            if stored is None:
                raise ToolError(
                    "That cursor's query is no longer held by this server (it restarted, or another instance "
                    "made the cursor): run the query again without it."
                )
            _, _, flags = _HEADER.unpack_from(stored)
            payload = stored[_HEADER.size :]
        if flags == DEFLATED:
            payload = zlib.decompressobj(-15, zdict=_DICTIONARY).decompress(payload)
        state = json.loads(payload)
        if not isinstance(state, dict):
            raise ToolError(NOT_VALID)
        return state

    def _sign(self, expiry: int, flags: int, payload: bytes, caller: str, tool: str) -> str:
        body = _HEADER.pack(VERSION, expiry, flags) + payload
        return base64.urlsafe_b64encode(body + self._tag(body, caller, tool)).decode().rstrip("=")

    def _tag(self, body: bytes, caller: str, tool: str) -> bytes:
        # The caller and the tool are signed, not stored: a cursor names neither, and opens for no one else.
        binding = f"{caller}\0{tool}\0".encode()
        return hmac.new(self._key, binding + body, hashlib.sha256).digest()[:TAG_BYTES]
