"""Local certificate problems are found and explained before any network call."""

from __future__ import annotations

from pathlib import Path

import pytest

from auth import ClientCertificate, CredentialError

from .certificates import make_certificate, write_pem, write_pfx


def test_local_certificate_problems_are_explained(tmp_path: Path) -> None:
    key, certificate = make_certificate()
    other_key, _ = make_certificate()
    _, expired = make_certificate(expired=True)
    cases = {
        "does not match": write_pem(tmp_path / "mismatch.pem", other_key, certificate),
        "wrong passphrase": write_pfx(tmp_path / "client.pfx", key, certificate, "right"),
        "expired": write_pem(tmp_path / "expired.pem", key, expired),
        "is encrypted": write_pem(tmp_path / "encrypted.pem", key, certificate, "right"),
    }
    for message, path in cases.items():
        with pytest.raises(CredentialError) as raised:
            ClientCertificate.load(path, "wrong" if message == "wrong passphrase" else None)
        assert message in str(raised.value)
        assert "right" not in str(raised.value).replace("wrong", "")
