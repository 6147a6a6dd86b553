"""The two operator groups. Migration 0002 creates them; every migrate grants them the permissions of
models added since; `manage.py bridge_operator_groups` re-creates them with exactly these rules.

"Operators (read-only)" see every handover, message, delivery, event, endpoint and bot and change nothing.
"Operators" may also run the actions (close, retry, route back, re-open, resend, Test connection), which
need the change permission on handovers, messages and deliveries. Endpoints and credentials: superusers only.
"""

from __future__ import annotations

READ_ONLY = "Operators (read-only)"
OPERATORS = "Operators"
VIEW_MODELS = (
    "ccaasendpoint",
    "conversationlink",
    "message",
    "delivery",
    "inboundevent",
    "handoverevent",
    "tag",
    "infobipbot",
    "alertchannel",
    "alertincident",
    "alertnotification",
)
ACTION_MODELS = ("conversationlink", "message", "delivery", "alertnotification")
# Operators subscribe themselves to alerts: they manage the alert channels.
MANAGED_MODELS = ("alertchannel",)


def ensure_groups(*, add_only: bool = False) -> None:
    """Create the two groups with their permissions. With `add_only` (after every migrate), grant
    what new models need without taking away anything an administrator added."""
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    create_permissions(global_apps.get_app_config("bridge"), verbosity=0)
    view = Permission.objects.filter(
        content_type__app_label="bridge", codename__in=[f"view_{m}" for m in VIEW_MODELS]
    )
    change = Permission.objects.filter(
        content_type__app_label="bridge",
        codename__in=[f"change_{m}" for m in ACTION_MODELS]
        + [f"{verb}_{m}" for m in MANAGED_MODELS for verb in ("add", "change", "delete")],
    )
    read_only, _ = Group.objects.get_or_create(name=READ_ONLY)
    operators, _ = Group.objects.get_or_create(name=OPERATORS)
    if add_only:
        read_only.permissions.add(*view)
        operators.permissions.add(*view, *change)
        return
    read_only.permissions.set(view)
    operators.permissions.set([*view, *change])
