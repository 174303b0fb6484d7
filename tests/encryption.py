"""Whether a token cache file on disk is ciphertext only."""

from __future__ import annotations

import re

# A Fernet token: URL-safe base64 of version byte 0x80 and the rest. It cannot hold a quote, a brace or a dot,
# so no JSON and no JWT (header.payload.signature) can be in a file that matches it whole. Checking for "eyJ"
# instead fails at random: that is an ordinary run of three base64 characters.
_FERNET = re.compile(rb"gAAAAA[A-Za-z0-9_-]+={0,2}")


def assert_encrypted(stored: bytes) -> None:
    assert _FERNET.fullmatch(stored.strip()), stored[:80]
