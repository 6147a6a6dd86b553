"""Credentials encrypted at rest with the keys of BRIDGE_ENCRYPTION_KEYS (Fernet, rotation-ready)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db.models.query_utils import DeferredAttribute
from encrypted_fields.fields import EncryptedJSONField

from bridge.exceptions import CredentialsUnreadable


def configured_keys() -> list[bytes]:
    """BRIDGE_ENCRYPTION_KEYS as bytes, in order: the first encrypts, every one decrypts."""
    return [key.strip().encode() for key in settings.BRIDGE_ENCRYPTION_KEYS if key.strip()]


@lru_cache(maxsize=8)
def _multi_fernet(keys: tuple[bytes, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


class UnreadableSecret:
    """A stored value no configured key decrypts. Loading the row works (pages, lists, joins);
    reading the attribute raises CredentialsUnreadable; saving the row keeps the stored text as it
    is, so a missing key that is put back finds its secrets intact."""

    __slots__ = ("stored",)

    def __init__(self, stored: str) -> None:
        self.stored = stored

    def __repr__(self) -> str:
        return "<unreadable secret>"


class _SecretDescriptor(DeferredAttribute):
    """A data descriptor (it has __set__), so reads always pass through __get__."""

    def __set__(self, instance, value) -> None:
        instance.__dict__[self.field.attname] = value

    def __get__(self, instance, cls=None):
        value = super().__get__(instance, cls)
        if isinstance(value, UnreadableSecret):
            what = f"{instance._meta.verbose_name} {instance}" if instance is not None else "a row"
            raise CredentialsUnreadable(
                f"the stored {self.field.name} of {what} cannot be decrypted with BRIDGE_ENCRYPTION_KEYS "
                "(was a key removed?): restore the key, or enter the credentials again"
            )
        return value


def is_readable(instance, field_name: str = "credentials") -> bool:
    """Whether the instance's encrypted field decrypts with the configured keys (never raises)."""
    return not isinstance(instance.__dict__.get(field_name), UnreadableSecret)


class RotatingEncryptedJSONField(EncryptedJSONField):
    """django-fernet-encrypted-fields' JSON field, keyed by BRIDGE_ENCRYPTION_KEYS.

    The first key encrypts; every key decrypts (MultiFernet), so a new key is put first and the old
    ones kept until `manage.py bridge_rotate_keys` has re-encrypted every row. Each JSON value is
    encrypted on its own; keys (field names) stay readable, values never are. The keys are read
    from settings on every use, so a changed setting takes effect without a restart of the field.

    A value that no configured key decrypts loads as an UnreadableSecret: the row stays usable, and
    reading the attribute raises CredentialsUnreadable (a ConfigurationError an operator can act
    on) instead of handing back ciphertext.
    """

    descriptor_class = _SecretDescriptor

    @property
    def keys(self) -> list[bytes]:
        return configured_keys()

    @property
    def f(self) -> MultiFernet:
        return _multi_fernet(tuple(configured_keys()))

    def from_db_value(self, value: Any, expression, connection) -> Any:
        if value is None or not isinstance(value, str):
            return value
        try:
            return self._decrypt_values(json.loads(value))
        except (InvalidToken, ValueError, TypeError):
            return UnreadableSecret(value)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, UnreadableSecret):
            return value
        return super().to_python(value)

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, UnreadableSecret):
            return value.stored
        return super().get_prep_value(value)

    def value_from_object(self, obj) -> Any:
        value = obj.__dict__.get(self.attname)
        return {} if isinstance(value, UnreadableSecret) else super().value_from_object(obj)
