"""Encryption keys: which key each stored secret uses, and rotation (`manage.py bridge_rotate_keys`).

Every field of type RotatingEncryptedJSONField, in every model, is covered (today: the endpoints'
credentials and the Infobip subscription's secret). A stored value is a JSON object whose leaves are
Fernet tokens; each token is attributed to the first configured key that decrypts it.

The documented rotation: put a new key first in BRIDGE_ENCRYPTION_KEYS, keep the old ones after
it, run `manage.py bridge_rotate_keys`, then drop the old keys. The command refuses (changing
nothing) when a stored value cannot be decrypted with the configured keys, or when the keys look
oldest-first (the first key was retired by an earlier rotation, or a key after the first is used by
no stored value and was never retired: a new key that is not first).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps
from django.core import checks
from django.db import DatabaseError, transaction
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from bridge.fields import RotatingEncryptedJSONField, configured_keys


def fingerprint(key: bytes) -> str:
    """16 hex digits of the key's SHA-256: names a key in the database without storing it."""
    return hashlib.sha256(key.strip()).hexdigest()[:16]


def encrypted_fields() -> list[tuple[type, RotatingEncryptedJSONField]]:
    """Every (model, field) whose values are encrypted with BRIDGE_ENCRYPTION_KEYS."""
    return [
        (model, f)
        for model in apps.get_models()
        for f in model._meta.concrete_fields
        if isinstance(f, RotatingEncryptedJSONField)
    ]


def _tokens(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tokens(item)]
    if isinstance(value, list):
        return [t for item in value for t in _tokens(item)]
    return [] if value is None else [str(value)]


@dataclass
class StoredValue:
    """One encrypted column of one row, and which key (index in BRIDGE_ENCRYPTION_KEYS) each of its
    tokens needs; None for a token no configured key decrypts."""

    model: type
    field: RotatingEncryptedJSONField
    pk: Any
    label: str
    key_indexes: list[int | None]

    @property
    def where(self) -> str:
        return f"{self.model._meta.verbose_name} {self.label} (id {self.pk}), field {self.field.name}"

    @property
    def readable(self) -> bool:
        return None not in self.key_indexes

    @property
    def on_first_key(self) -> bool:
        return all(index == 0 for index in self.key_indexes)


@dataclass
class Inventory:
    keys: list[bytes]
    values: list[StoredValue] = field(default_factory=list)

    @property
    def unreadable(self) -> list[StoredValue]:
        return [v for v in self.values if not v.readable]

    @property
    def not_on_first_key(self) -> list[StoredValue]:
        return [v for v in self.values if v.readable and not v.on_first_key]

    def tokens_per_key(self) -> Counter:
        return Counter(i for v in self.values for i in v.key_indexes if i is not None)


def inventory(keys: list[bytes] | None = None) -> Inventory:
    """Read every encrypted value as stored (no decryption through the model) and attribute its tokens."""
    keys = configured_keys() if keys is None else keys
    fernets = [Fernet(key) for key in keys]
    found = Inventory(keys=keys)
    for model, column in encrypted_fields():
        rows = model.objects.defer(column.name).annotate(_stored=Cast(column.name, output_field=TextField()))
        for row in rows:
            pk, raw, label = row.pk, row._stored, str(row)
            if raw is None:
                continue
            try:
                data = json.loads(raw) if isinstance(raw, str) else raw
            except ValueError:
                found.values.append(StoredValue(model, column, pk, label, [None]))
                continue
            indexes = []
            for token in _tokens(data):
                indexes.append(next((i for i, f in enumerate(fernets) if _decrypts(f, token)), None))
            if indexes:
                found.values.append(StoredValue(model, column, pk, label, indexes))
    return found


def _decrypts(fernet: Fernet, token: str) -> bool:
    try:
        fernet.decrypt(token.encode())
    except (InvalidToken, ValueError, TypeError):
        return False
    return True


class RotationRefused(Exception):
    """Rotation would lose or mis-encrypt secrets; nothing was changed."""


@dataclass
class Rotation:
    rows: Counter = field(default_factory=Counter)  # model verbose name -> rows re-encrypted
    already_current: int = 0


def rotate() -> Rotation:
    """Re-encrypt every stored secret with the first key; RotationRefused when that is unsafe."""
    from bridge.models import RetiredEncryptionKey

    keys = configured_keys()
    if not keys:
        raise RotationRefused("BRIDGE_ENCRYPTION_KEYS is empty")
    with transaction.atomic():
        for model, _ in encrypted_fields():
            list(model.objects.select_for_update().values_list("pk", flat=True))  # hold the rows
        found = inventory(keys)
        if found.unreadable:
            rows = "; ".join(v.where for v in found.unreadable[:20])
            raise RotationRefused(
                f"{len(found.unreadable)} stored value(s) cannot be decrypted with any key of "
                f"BRIDGE_ENCRYPTION_KEYS: {rows}. Put the key that encrypted them back (anywhere after "
                "the first), or enter those credentials again, then run this command again."
            )
        retired = set(RetiredEncryptionKey.objects.values_list("fingerprint", flat=True))
        if fingerprint(keys[0]) in retired:
            raise RotationRefused(
                "the first key of BRIDGE_ENCRYPTION_KEYS was retired by an earlier rotation: the keys look "
                "oldest-first. The newest key must come first (it encrypts); older keys follow it."
            )
        used = found.tokens_per_key()
        if found.values:
            unused_new = [
                i for i in range(1, len(keys)) if not used[i] and fingerprint(keys[i]) not in retired
            ]
            if unused_new:
                positions = ", ".join(f"#{i + 1}" for i in unused_new)
                raise RotationRefused(
                    f"key {positions} of BRIDGE_ENCRYPTION_KEYS is used by no stored value and was never "
                    "retired by a rotation: it looks like a new key that is not first. Put the new key "
                    "first (it encrypts; the old keys follow it) and run this command again. If it is an "
                    "old key that no value needs any more, simply remove it."
                )
        result = Rotation(already_current=sum(1 for v in found.values if v.on_first_key))
        moved_per_key: Counter = Counter()
        for value in found.not_on_first_key:
            obj = value.model.objects.get(pk=value.pk)
            plain = getattr(obj, value.field.name)  # decrypts with any key
            value.model.objects.filter(pk=value.pk).update(**{value.field.name: plain})  # first key
            result.rows[str(value.model._meta.verbose_name)] += 1
            moved_per_key.update(i for i in value.key_indexes if i)
        for index, moved in moved_per_key.items():
            RetiredEncryptionKey.objects.update_or_create(
                fingerprint=fingerprint(keys[index]),
                defaults={"retired_at": timezone.now(), "values_moved": moved},
            )
    return result


@checks.register()
def check_encryption_keys(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """`manage.py check`: warn when stored secrets use a key that is not first, or no key at all."""
    try:
        found = inventory()
    except (DatabaseError, ValueError, TypeError):
        return []  # no database yet (before migrate), or keys the settings check reports
    messages: list[checks.CheckMessage] = []
    if found.unreadable:
        messages.append(
            checks.Warning(
                f"{len(found.unreadable)} stored secret(s) cannot be decrypted with BRIDGE_ENCRYPTION_KEYS: "
                + "; ".join(v.where for v in found.unreadable[:10]),
                hint="Put the key that encrypted them back in BRIDGE_ENCRYPTION_KEYS, or enter those "
                "credentials again in the admin.",
                id="bridge.W101",
            )
        )
    if found.not_on_first_key:
        per_key = sorted({i + 1 for v in found.not_on_first_key for i in v.key_indexes if i})
        messages.append(
            checks.Warning(
                f"{len(found.not_on_first_key)} stored secret(s) use key "
                + ", ".join(f"#{i}" for i in per_key)
                + " of BRIDGE_ENCRYPTION_KEYS, not the first: "
                + "; ".join(v.where for v in found.not_on_first_key[:10]),
                hint="Run `manage.py bridge_rotate_keys` before removing any key.",
                id="bridge.W102",
            )
        )
    return messages
