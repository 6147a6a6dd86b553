"""Alerts in the console: channels operators subscribe (e-mail, Slack, Teams, generic JSON), the
incidents they were told about, and the alert outbox with its retries and dead letters."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from bridge.admin.display import GuardedActionsMixin, ReadOnlyMixin, actor, ago, badge, error_text, plural
from bridge.fields import is_readable
from bridge.models import AlertChannel, AlertIncident, AlertNotification

TONES = {"PENDING": "warn", "DONE": "ok", "SKIPPED": "muted", "DEAD": "bad"}


class AlertChannelForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=AlertIncident.Kind.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Each incident is sent once when it starts and once when it is over.",
    )
    recipients = forms.CharField(
        required=False,
        help_text="E-mail channels: addresses separated by commas (sent with the bridge's mail settings).",
        widget=forms.TextInput(attrs={"size": 60}),
    )
    url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text="Webhook channels: the incoming-webhook URL. Stored encrypted; leave blank to keep it.",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "size": 60}),
    )

    class Meta:
        model = AlertChannel
        fields = ["name", "kind", "events", "enabled", "max_per_hour"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A target no configured key decrypts (a removed key) is shown empty and entered again.
        target = (self.instance.target or {}) if is_readable(self.instance, "target") else {}
        self.initial.setdefault("recipients", ", ".join(target.get("to") or []))
        if target.get("url"):
            self.fields["url"].help_text = "Set (stored encrypted, never shown); leave blank to keep it."

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        target = dict(self.instance.target or {}) if is_readable(self.instance, "target") else {}
        if kind == AlertChannel.Kind.EMAIL:
            to = [a.strip() for a in (data.get("recipients") or "").split(",") if a.strip()]
            for address in to:
                forms.EmailField().clean(address)
            if not to:
                self.add_error("recipients", "Give at least one address.")
            target = {"to": to}
        else:
            url = data.get("url") or target.get("url")
            if not url:
                self.add_error("url", "Give the webhook URL.")
            target = {"url": url or ""}
        self.target = target
        return data

    def save(self, commit=True):
        channel = super().save(commit=False)
        channel.target = self.target
        if commit:
            channel.save()
        return channel


@admin.register(AlertChannel)
class AlertChannelAdmin(GuardedActionsMixin, admin.ModelAdmin):
    form = AlertChannelForm
    list_display = ("name", "kind", "subscribed", "enabled", "last_sent", "error")
    readonly_fields = ("last_sent_at", "last_error", "last_error_at")

    @admin.display(description="Subscribed to")
    def subscribed(self, obj):
        labels = dict(AlertIncident.Kind.choices)
        return ", ".join(labels.get(e, e) for e in obj.events or []) or "—"

    @admin.display(description="Last sent", ordering="last_sent_at")
    def last_sent(self, obj):
        return ago(obj.last_sent_at)

    @admin.display(description="Last error")
    def error(self, obj):
        return error_text(obj.last_error, 60)


@admin.register(AlertIncident)
class AlertIncidentAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("kind", "key", "summary", "opened_at", "resolved_at")
    list_filter = ("kind", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("=key",)
    show_full_result_count = False


@admin.register(AlertNotification)
class AlertNotificationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "channel",
        "subject",
        "recovery",
        "state_badge",
        "attempts",
        "next_attempt_at",
        "error",
    )
    list_filter = ("state", "channel")
    list_select_related = ("channel",)
    show_full_result_count = False
    actions = ("retry_selected",)

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj):
        return badge(obj.get_state_display(), TONES.get(obj.state, "muted"))

    @admin.display(description="Last error")
    def error(self, obj):
        return error_text(obj.last_error, 60)

    @admin.action(description="Send again now", permissions=["change"])
    def retry_selected(self, request, queryset):
        count = queryset.exclude(state=AlertNotification.Status.DONE).update(
            state=AlertNotification.Status.PENDING, attempts=0, next_attempt_at=timezone.now()
        )
        for note in queryset[:200]:
            self.log_change(request, note, f"Queued again by {actor(request)}.")
        self.message_user(request, f"{plural(count, 'alert')} queued again.", messages.SUCCESS)
