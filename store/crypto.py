"""The key ring for personal data at rest: AES-256-GCM under versioned keys from [privacy] (never the
database), one active key for new data, the others still readable until `flask keys rotate` is done;
and an HMAC-SHA256 helper for lookup columns.

Files are encrypted in chunks, so a photo is never copied whole beyond the bytes its caller holds:

    header  = MAGIC | key id length (1 byte) | key id (ASCII) | nonce prefix (8 random bytes)
    chunk i = AES-GCM(key, nonce = prefix | i (4 bytes, big-endian), aad = header | last (1 byte))

Each chunk holds CHUNK plaintext bytes (the last one fewer, possibly none) plus a 16-byte tag. The
chunk number in the nonce and the last-chunk flag in the AAD refuse reordered, dropped or truncated
chunks. A file without MAGIC is an older plaintext file and is read as it is.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from settings import ConfigError, PrivacySettings

MAGIC = b"PCE1"
CHUNK = 64 * 1024
TAG = 16
PREFIX = 8
TOKEN_PREFIX = "enc1:"

MISSING_KEY = ("no encryption key for photos: set [privacy] keys = { 1 = \"KEY\" } and active_key = \"1\" (or key_file, "
               "or COLLECTOR_KEY_FILE) in the config file (`make run` does this only for a config.toml it creates). "
               "Generate KEY with: python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'")

MISSING_LOOKUP_KEY = ("no lookup key: set [privacy] lookup_key = \"KEY\" (or in key_file, or COLLECTOR_KEY_FILE): "
                      "without it no message holding an ID or phone number can be stored. "
                      "Generate KEY as for [privacy] keys.")


class DecryptError(ValueError):
    """Encrypted data that no key of the ring opens, or that was altered."""


@dataclass(frozen=True)
class FileHeader:
    key_id: str
    prefix: bytes
    raw: bytes


class KeyRing:
    def __init__(self, keys: dict[str, bytes], active_key: str = "", lookup_key: bytes = b""):
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.active_key = active_key
        self._lookup_key = lookup_key

    @classmethod
    def from_settings(cls, privacy: PrivacySettings) -> "KeyRing":
        keys = {key_id: base64.b64decode(value) for key_id, value in privacy.keys.items()}
        return cls(keys, privacy.active_key, base64.b64decode(privacy.lookup_key) if privacy.lookup_key else b"")

    @property
    def can_encrypt(self) -> bool:
        return bool(self.active_key)

    def _cipher(self, key_id: str) -> AESGCM:
        try:
            return self._keys[key_id]
        except KeyError:
            raise DecryptError(f"key {key_id!r} is not in [privacy] keys") from None

    def _active(self) -> tuple[str, AESGCM]:
        if not self.active_key:
            raise ConfigError(MISSING_KEY)
        return self.active_key, self._keys[self.active_key]

    # --- lookup columns ---------------------------------------------------------------------------

    def lookup_hash(self, value: str) -> str:
        """HMAC-SHA256 of the value under lookup_key, hex: equal values hash equal, nothing reads back."""
        if not self._lookup_key:
            raise ConfigError(MISSING_LOOKUP_KEY)
        return hmac.new(self._lookup_key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    # --- short values (future encrypted columns) --------------------------------------------------

    def seal(self, text: str) -> str:
        key_id, cipher = self._active()
        nonce = os.urandom(12)
        sealed = cipher.encrypt(nonce, text.encode("utf-8"), key_id.encode("ascii"))
        return f"{TOKEN_PREFIX}{key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def open(self, token: str) -> str:
        if not token.startswith(TOKEN_PREFIX):
            return token  # not yet encrypted
        key_id, _, body = token[len(TOKEN_PREFIX):].partition(":")
        try:
            raw = base64.urlsafe_b64decode(body)
            return self._cipher(key_id).decrypt(raw[:12], raw[12:], key_id.encode("ascii")).decode("utf-8")
        except (InvalidTag, ValueError) as exc:  # binascii.Error is a ValueError
            raise DecryptError("a sealed value was altered or sealed under another key") from exc

    # --- files --------------------------------------------------------------------------------------

    def encrypt_chunks(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """The encrypted file for the plaintext arriving in chunks (any sizes): header, then sealed chunks."""
        key_id, cipher = self._active()
        encoded = key_id.encode("ascii")
        header = MAGIC + bytes([len(encoded)]) + encoded + os.urandom(PREFIX)
        yield header
        prefix = header[-PREFIX:]
        pending, index = bytearray(), 0  # deleting from a bytearray's front is cheap: no quadratic copies
        for piece in chunks:
            pending += piece
            while len(pending) > CHUNK:  # keep at least one byte back: the last chunk must be flagged
                yield cipher.encrypt(_nonce(prefix, index), bytes(pending[:CHUNK]), header + b"\x00")
                del pending[:CHUNK]
                index += 1
        yield cipher.encrypt(_nonce(prefix, index), bytes(pending), header + b"\x01")

    def decrypt_file(self, source: BinaryIO) -> Iterator[bytes]:
        """The plaintext of an open file, chunk by chunk; a file without the header is yielded as it is."""
        header = read_header(source)
        if header is None:
            while block := source.read(CHUNK):
                yield block
            return
        cipher = self._cipher(header.key_id)
        index, block = 0, source.read(CHUNK + TAG)
        while True:
            following = source.read(CHUNK + TAG) if len(block) == CHUNK + TAG else b""
            last = not following
            try:
                yield cipher.decrypt(_nonce(header.prefix, index), block, header.raw + (b"\x01" if last else b"\x00"))
            except InvalidTag as exc:
                raise DecryptError(f"photo file chunk {index} was altered, cut short or sealed under another key") from exc
            if last:
                return
            block, index = following, index + 1


def read_header(source: BinaryIO) -> FileHeader | None:
    """The encryption header at the start of an open file (left positioned after it), or None for a
    plaintext file (left at its start)."""
    start = source.read(len(MAGIC) + 1)
    if len(start) < len(MAGIC) + 1 or not start.startswith(MAGIC):
        source.seek(0)
        return None
    key_id = source.read(start[-1])
    prefix = source.read(PREFIX)
    return FileHeader(key_id.decode("ascii"), prefix, start + key_id + prefix)


def file_key_id(path) -> str | None:
    """The key id a photo file is encrypted under, None for a plaintext file."""
    with open(path, "rb") as source:
        header = read_header(source)
    return header.key_id if header else None


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + index.to_bytes(4, "big")


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode("ascii")
