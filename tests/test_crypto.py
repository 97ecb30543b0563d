"""AES-GCM at rest: round trip, tampering, wrong key, key files."""

from __future__ import annotations

import os

import pytest

from portal.platform.crypto import DataCipher, DecryptionError, KeyFileError, create_key, load_key


def test_round_trip_and_purpose_binding():
    cipher = DataCipher(os.urandom(32))
    blob = cipher.encrypt("VMware1!VMware1!", "credential.password")
    assert b"VMware1!" not in blob
    assert cipher.decrypt(blob, "credential.password") == "VMware1!VMware1!"
    assert cipher.encrypt("same", "p") != cipher.encrypt("same", "p")  # fresh nonce
    with pytest.raises(DecryptionError):
        cipher.decrypt(blob, "endpoint.password")


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_tampered_ciphertext_fails_loudly(position):
    cipher = DataCipher(os.urandom(32))
    blob = bytearray(cipher.encrypt("secret value", "p"))
    blob[position] ^= 0x01
    with pytest.raises(DecryptionError) as info:
        cipher.decrypt(bytes(blob), "p")
    assert "secret value" not in str(info.value)


def test_truncated_and_wrong_key():
    cipher = DataCipher(os.urandom(32))
    blob = cipher.encrypt("secret value", "p")
    with pytest.raises(DecryptionError, match="truncated"):
        cipher.decrypt(blob[:10], "p")
    with pytest.raises(DecryptionError, match="different data key"):
        DataCipher(os.urandom(32)).decrypt(blob, "p")


def test_key_file_created_once_with_mode_0600(tmp_path):
    path = tmp_path / "data.key"
    assert create_key(path) is True
    key = load_key(path)
    assert len(key) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert create_key(path) is False and load_key(path) == key
    path.write_text("not hex")
    with pytest.raises(KeyFileError, match=str(path)):
        load_key(path)
    with pytest.raises(KeyFileError, match="missing"):
        load_key(tmp_path / "absent.key")


@pytest.mark.parametrize(
    "content, reason",
    [(b"\xff\xfe\x00binary key\x89", "binary data"), (b"not-hex-at-all\n", "not hex")],
)
def test_a_key_in_the_wrong_format_is_named_plainly(tmp_path, content, reason):
    path = tmp_path / "data.key"
    path.write_bytes(content)
    with pytest.raises(KeyFileError) as info:
        load_key(path)
    message = str(info.value)
    assert "64 hexadecimal digits" in message and reason in message
    assert "codec" not in message and "0x" not in message
