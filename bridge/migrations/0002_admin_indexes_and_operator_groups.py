"""Indexes the operator console filters on, and the two operator groups.

"Operators (read-only)" see every handover, message, delivery, event and endpoint and change nothing.
"Operators" may also run the actions (close, retry, route back, re-open, resend): those need the
change permission on handovers, messages and deliveries. Endpoints and credentials are edited by
superusers only (enforced in the admin).
"""

from django.db import migrations, models

READ_ONLY = "Operators (read-only)"
OPERATORS = "Operators"
MODELS = ["ccaasendpoint", "conversationlink", "message", "delivery", "inboundevent", "handoverevent", "tag"]
ACTION_MODELS = ["conversationlink", "message", "delivery"]


def create_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations; the groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.filter(content_type__app_label="bridge", codename__in=[f"view_{m}" for m in MODELS])
    change = Permission.objects.filter(
        content_type__app_label="bridge", codename__in=[f"change_{m}" for m in ACTION_MODELS]
    )
    read_only, _ = Group.objects.get_or_create(name=READ_ONLY)
    read_only.permissions.set(view)
    operators, _ = Group.objects.get_or_create(name=OPERATORS)
    operators.permissions.set(list(view) + list(change))


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[READ_ONLY, OPERATORS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("bridge", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="conversationlink",
            index=models.Index(fields=["escalated_at"], name="link_escalated_idx"),
        ),
        migrations.AddIndex(
            model_name="conversationlink",
            index=models.Index(fields=["channel"], name="link_channel_idx"),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(fields=["lane", "state", "sort_at"], name="delivery_lane_waiting_idx"),
        ),
        migrations.RunPython(create_groups, remove_groups),
    ]
