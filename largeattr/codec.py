"""Payload encryption: blob bytes and attribute values never reach the Temporal server.

Without a codec, an inline blob (up to 256 KiB) and every plain attribute value travel
base64-encoded in the workflow input, and the server keeps them in its history for the
namespace's retention period; the Web UI shows them in the Input panel. With this codec,
the client, the worker and the CLI encrypt every payload (inputs, results, activity
arguments, failure details, query answers, current details) before it leaves the process:

- AES-256-GCM, a fresh 96-bit nonce per payload; the whole original payload (its metadata
  too) is the plaintext, so even the encoding is hidden.
- The key id travels in the payload's metadata (``encryption-key-id``) and is bound to
  the ciphertext as associated data. Keys rotate by putting a new key first in the keyring:
  new payloads use it; histories written under older keys still decrypt while those keys
  stay listed.
- Payloads that are not encrypted pass through decode unchanged, so turning the codec on
  does not strand sagas that started without it.

The keyring comes from ``LARGEATTR_CODEC_KEY_FILE`` (a file, one ``ID=BASE64KEY`` per line,
the first encrypts) or ``LARGEATTR_CODEC_KEYS`` (the same entries, comma-separated);
``largeattr codec-key`` makes a key. ``largeattr codec-server`` serves the same codec over
HTTP so the Web UI and ``temporal --codec-endpoint`` can show decoded data to those who
hold its token.

Step summaries and current details are payloads too, so they are encrypted as well (the SDK's
payload visitor covers user metadata). What stays in clear: workflow ids (they name the
table and the item key), workflow and activity types, task queues, timestamps, and the
search attributes, which the server must read to filter. Failure messages and stack traces
move into an encrypted attribute (the SDK's ``encode_common_attributes``, applied by
``largeattr.failures``), since a message may quote input.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from largeattr.errors import InvalidInput, UndecryptablePayload

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
KEYS_ENV = "LARGEATTR_CODEC_KEYS"
KEY_FILE_ENV = "LARGEATTR_CODEC_KEY_FILE"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Keyring:
    """Named AES-256 keys; the first one encrypts, all of them decrypt."""

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise InvalidInput(f"the codec keyring is empty; {_MAKE_ONE}")
        ids = [key_id for key_id, _ in self.keys]
        if len(set(ids)) != len(ids):
            raise InvalidInput(f"the codec keyring lists a key id twice: {ids}")

    @property
    def active(self) -> str:
        return self.keys[0][0]

    def key(self, key_id: str) -> bytes | None:
        return next((key for kid, key in self.keys if kid == key_id), None)

    @classmethod
    def parse(cls, entries: Sequence[str], where: str) -> Keyring:
        """Keys from ``ID=BASE64`` entries; blank entries and ``#`` comments are skipped."""
        keys = []
        for number, raw in enumerate(entries, 1):
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            key_id, sep, encoded = entry.partition("=")
            key_id = key_id.strip()
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                key = b""
            if not sep or not key_id or len(key) != KEY_BYTES:
                # The entry itself is never echoed: it may be a key.
                raise InvalidInput(
                    f"{where}, entry {number}: expected ID=BASE64 of a {KEY_BYTES}-byte key; "
                    f"{_MAKE_ONE}"
                )
            keys.append((key_id, key))
        return cls(tuple(keys))

    @classmethod
    def from_file(cls, path: str | Path) -> Keyring:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"the codec key file {path} is not UTF-8 text") from None
        except OSError as err:
            raise InvalidInput(
                f"cannot read the codec key file {path}: {err.strerror or err}"
            ) from None
        return cls.parse(text.splitlines(), str(path))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keyring | None:
        """The keyring the environment names, or None when it names none."""
        env = os.environ if environ is None else environ
        path, inline = env.get(KEY_FILE_ENV), env.get(KEYS_ENV)
        if path and inline:
            raise InvalidInput(f"set {KEY_FILE_ENV} or {KEYS_ENV}, not both")
        if path:
            return cls.from_file(path)
        if inline:
            return cls.parse(inline.split(","), KEYS_ENV)
        return None


_MAKE_ONE = "`largeattr codec-key --id NAME` prints a new entry"


def new_key_entry(key_id: str) -> str:
    """A keyring entry with a fresh random key."""
    if not key_id or "=" in key_id or "," in key_id or key_id != key_id.strip():
        raise InvalidInput("a key id must be non-empty, without '=', ',' or outer spaces")
    return f"{key_id}={base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads, keyed by a ``Keyring``."""

    def __init__(self, keyring: Keyring) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise InvalidInput(
                "payload encryption needs the `cryptography` package: "
                "pip install 'largeattr[codec]'"
            ) from None
        self.keyring = keyring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys}
        self._warned_plain = False

    def encrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") == ENCODING:
            return payload
        key_id = self.keyring.active
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed
        )

    def decrypt(self, payload: Payload) -> Payload:
        from cryptography.exceptions import InvalidTag

        if payload.metadata.get("encoding") != ENCODING:
            self._passed_plain()
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UndecryptablePayload(
                f"a payload is encrypted with key {key_id!r}, which this process's codec "
                f"keyring lacks (it has {[kid for kid, _ in self.keyring.keys]}); add that "
                f"key back to {KEY_FILE_ENV} or {KEYS_ENV} (after the active one)",
                key_id=key_id,
            )
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], key_id.encode())
        except (InvalidTag, ValueError):  # ValueError: too short to hold a nonce
            raise UndecryptablePayload(
                f"a payload under key {key_id!r} does not decrypt: the key with that id "
                "differs from the one that encrypted it, or the payload was altered",
                key_id=key_id,
            ) from None
        original = Payload()
        original.ParseFromString(plain)
        return original

    def _passed_plain(self) -> None:
        """Once per codec: an unencrypted payload passes (a saga started before the codec
        was on, or a process without the keyring); say so, since it was stored in clear."""
        if not self._warned_plain:
            self._warned_plain = True
            log.warning(
                "an unencrypted payload was decoded as is: it was written by a process "
                "without the codec keyring (or before the codec was on), and Temporal holds "
                "it in clear; give every client and worker %s or %s",
                KEY_FILE_ENV,
                KEYS_ENV,
            )

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]


def codec_from_env(environ: Mapping[str, str] | None = None) -> EncryptionCodec | None:
    keyring = Keyring.from_env(environ)
    return EncryptionCodec(keyring) if keyring else None
