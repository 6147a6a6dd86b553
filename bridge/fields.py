"""Credentials encrypted at rest with the keys of BRIDGE_ENCRYPTION_KEYS (Fernet, rotation-ready)."""

from __future__ import annotations

from typing import Any

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.utils.functional import cached_property
from encrypted_fields.fields import EncryptedJSONField

from bridge.exceptions import ConfigurationError


class RotatingEncryptedJSONField(EncryptedJSONField):
    """django-fernet-encrypted-fields' JSON field, keyed by BRIDGE_ENCRYPTION_KEYS.

    The first key encrypts; every key decrypts (MultiFernet), so a new key is put first and the old
    ones kept until `manage.py bridge_rotate_keys` has re-encrypted every row. Each JSON value is
    encrypted on its own; keys (field names) stay readable, values never are.
    """

    @cached_property
    def keys(self) -> list[bytes]:
        return [key.strip().encode() for key in settings.BRIDGE_ENCRYPTION_KEYS if key.strip()]

    def _decrypt_values(self, value: Any) -> Any:
        try:
            return super()._decrypt_values(value)
        except InvalidToken as exc:
            # The library would hand back the ciphertext; an unreadable secret must be loud instead.
            raise ConfigurationError(
                "stored credentials cannot be decrypted with BRIDGE_ENCRYPTION_KEYS (was a key removed?)"
            ) from exc
