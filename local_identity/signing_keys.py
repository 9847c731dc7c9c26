"""RS256 signing keys kept in the data directory: the newest signs, the JWKS publishes the newest two.

Rotation (``rotate``) adds a key and keeps the previous one in the JWKS, as Entra ID does, so tokens
signed before the rotation stay valid until they expire while validators pick the new key up by its kid.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from jwt.algorithms import RSAAlgorithm

PUBLISHED_KEYS = 2


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: RSAPrivateKey
    created: float

    def public_jwk(self) -> dict[str, str]:
        jwk: dict[str, str] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def to_json(self) -> dict[str, object]:
        pem = self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
        return {"kid": self.kid, "created": self.created, "privateKeyPem": pem.decode()}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> SigningKey:
        key = serialization.load_pem_private_key(str(data["privateKeyPem"]).encode(), password=None)
        assert isinstance(key, RSAPrivateKey)
        return cls(str(data["kid"]), key, float(data["created"]))  # type: ignore[arg-type]

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(secrets.token_hex(8), rsa.generate_private_key(public_exponent=65537, key_size=2048), time.time())


class SigningKeys:
    """The key ring in ``<data_dir>/signing-keys.json`` (created on first use, mode 0600)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "signing-keys.json"
        self._lock = threading.Lock()
        data_dir.mkdir(parents=True, exist_ok=True)
        self._keys = self._load()
        if not self._keys:
            self.rotate()

    def _load(self) -> list[SigningKey]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        return [SigningKey.from_json(item) for item in document["keys"]]

    def _save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump({"keys": [key.to_json() for key in self._keys]}, file)
        temporary.replace(self.path)

    @property
    def current(self) -> SigningKey:
        return self._keys[0]

    def rotate(self) -> SigningKey:
        """Add a new signing key; the previous one stays published, older ones are dropped."""
        with self._lock:
            self._keys = [SigningKey.generate(), *self._keys][:PUBLISHED_KEYS]
            self._save()
            return self._keys[0]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.public_jwk() for key in self._keys]}
