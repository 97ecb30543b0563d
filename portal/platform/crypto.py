"""AES-GCM encryption of secrets at rest under a data key kept outside the database."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, current_app

# Purpose labels, bound to each ciphertext as associated data: a blob decrypts only for the
# purpose it was written for. The strings are stored implicitly in every database; never
# change one.
ENDPOINT_PASSWORD = "endpoint.password"  # noqa: S105 - an encryption label
LOCKER_PASSWORD = "endpoint.locker_password"  # noqa: S105 - an encryption label
CREDENTIAL_PASSWORD = "credential.password"  # noqa: S105 - an encryption label
HISTORY_PASSWORD = "credential.history"  # noqa: S105 - an encryption label
TOTP_SECRET = "user.totp"  # noqa: S105 - an encryption label
ACTION_PASSWORD = "action.password"  # noqa: S105 - an encryption label
SMTP_PASSWORD = "notify.smtp_password"  # noqa: S105 - an encryption label
WEBHOOK_URL = "notify.webhook_url"
WEBHOOK_SECRET = "notify.webhook_secret"  # noqa: S105 - an encryption label
AUDIT_FORWARD_TOKEN = "audit.forward_token"  # noqa: S105 - an encryption label
SIGN_IN_SECRET = "signin.secret"  # noqa: S105 - an encryption label (bind password, client secret)
# Purpose label of the key (derived from the data key) of the keyed hash stored beside each
# credential's ciphertext, so a sync tells an unchanged password without decrypting it.
CREDENTIAL_PASSWORD_MAC = "credential.password.mac"  # noqa: S105 - a key-derivation label


_EXTENSION = "portal_cipher"
_VERSION = b"\x01"
_KEY_ID_LEN = 8
_NONCE_LEN = 12


class DecryptionError(Exception):
    """A ciphertext failed authentication: tampered, truncated or under another key."""


class KeyFileError(Exception):
    """The data key file is missing or unreadable; the message names the file."""


def key_id(key: bytes) -> bytes:
    """Short identifier of a key, stored in each ciphertext so a wrong key is named as such."""
    return hashlib.sha256(b"vcf-portal-key-id" + key).digest()[:_KEY_ID_LEN]


class DataCipher:
    """Encrypts and decrypts secrets; `purpose` is bound as associated data."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the data key must be 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = key_id(key)
        self._mac_keys = {label: _derive(key, label) for label in (CREDENTIAL_PASSWORD_MAC,)}

    def mac(self, plaintext: str, label: str) -> bytes:
        """Keyed hash (HMAC-SHA256) of a text secret under the key derived for `label`."""
        return hmac.digest(self._mac_keys[label], plaintext.encode("utf-8"), "sha256")

    def encrypt(self, plaintext: str, purpose: str) -> bytes:
        """Encrypt a text secret; returns version, key id, nonce and ciphertext."""
        nonce = os.urandom(_NONCE_LEN)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), purpose.encode())
        return _VERSION + self.key_id + nonce + sealed

    def decrypt(self, blob: bytes, purpose: str) -> str:
        """Decrypt a blob made by encrypt(); raises DecryptionError on any mismatch."""
        header = 1 + _KEY_ID_LEN + _NONCE_LEN
        if not blob or len(blob) < header + 16 or blob[:1] != _VERSION:
            raise DecryptionError("stored secret is malformed or truncated")
        if blob[1 : 1 + _KEY_ID_LEN] != self.key_id:
            raise DecryptionError("stored secret was encrypted under a different data key")
        nonce = blob[1 + _KEY_ID_LEN : header]
        try:
            plain = self._aead.decrypt(nonce, bytes(blob[header:]), purpose.encode())
        except InvalidTag:
            raise DecryptionError("stored secret failed authentication (tampered?)") from None
        return plain.decode("utf-8")


def _derive(key: bytes, label: str) -> bytes:
    """A 32-byte key of its own for `label`, derived from the data key (HKDF-SHA256)."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"vcf-portal " + label.encode()
    ).derive(key)


def write_secret_file(path: Path, data: bytes) -> bool:
    """Create a 0600 file with data unless it exists; returns True when it was created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return False
    # Written aside and linked into place, so a process starting concurrently never reads a
    # half-written key: link() fails when another process won the race.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def create_key(path: Path) -> bool:
    """Write a new random 32-byte data key (hex, mode 0600) unless path exists."""
    return write_secret_file(path, secrets.token_hex(32).encode() + b"\n")


_NOT_A_KEY = "is not in the portal's format (64 hexadecimal digits on one line)"


def load_key(path: Path, repair_mode: bool = True) -> bytes:
    """Read the 32-byte data key at path; KeyFileError names the file when it is missing or bad.

    A key readable by others is made 0600 (start-up), unless repair_mode is False (a check).
    """
    try:
        mode = path.stat().st_mode & 0o777
        raw = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise KeyFileError(f"data key file {path} is missing") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"data key file {path} {_NOT_A_KEY}: it holds binary data") from None
    except OSError as exc:
        raise KeyFileError(f"data key file {path} cannot be read: {exc.strerror}") from None
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        raise KeyFileError(f"data key file {path} {_NOT_A_KEY}: it is not hex") from None
    if len(key) != 32:
        raise KeyFileError(f"data key file {path} does not hold a 32-byte key")
    if mode & 0o077 and repair_mode:
        # The key must be readable by the service user only; put that right, loudly.
        path.chmod(0o600)
        logging.getLogger("portal.platform.crypto").warning(
            "data key file %s had mode %o; changed to 600", path, mode
        )
    return key


def cipher(app: Flask | None = None) -> DataCipher:
    """The data cipher of the app (the current one by default), loaded at start-up."""
    app = app or current_app
    try:
        return app.extensions[_EXTENSION]
    except KeyError:
        raise KeyFileError("the data key is not loaded (the portal has not started)") from None


def has_cipher(app: Flask | None = None) -> bool:
    """True once start-up has loaded the data key."""
    return _EXTENSION in (app or current_app).extensions


def set_cipher(app: Flask, data_cipher: DataCipher) -> None:
    """Make data_cipher the app's cipher (start-up, key rotation)."""
    app.extensions[_EXTENSION] = data_cipher
