"""Admin forms: the endpoint form is built from the connector registry, so every kind shows its own
config and credential fields; credentials are write-only (a blank field keeps the stored value)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.helpers import ActionForm
from django.utils.html import escape

from bridge.connectors import REGISTRY, connector_class
from bridge.connectors.base import Field
from bridge.fields import is_readable
from bridge.models import CcaasEndpoint


def config_key(kind: str, name: str) -> str:
    return f"cfg__{kind}__{name}"


def credential_key(kind: str, name: str) -> str:
    return f"cred__{kind}__{name}"


class OptionalJSONField(forms.JSONField):
    """A JSON field that shows an empty box, not the literal `null`, when nothing is set."""

    def prepare_value(self, value: Any) -> Any:
        return "" if value is None else super().prepare_value(value)


def field_label(name: str, *, required: bool = False) -> str:
    """ "base_url" -> "Base URL"; required fields say so."""
    words = name.replace("_", " ").split()
    known = {"url": "URL", "id": "ID", "api": "API", "json": "JSON", "hmac": "HMAC", "rt": "RT"}
    label = " ".join(known.get(w.lower(), w) for w in words)
    label = label[:1].upper() + label[1:]
    return f"{label} (required)" if required else label


def _form_field(spec: Field, *, secret: bool) -> forms.Field:
    # Help texts are shown as HTML by the admin: escape them, so "<subdomain>" stays visible.
    common: dict[str, Any] = {
        "required": False,
        "help_text": escape(spec.help),
        "label": field_label(spec.name, required=spec.required),
    }
    if secret:
        return forms.CharField(
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
            strip=False,
            **common,
        )
    if spec.kind == "bool":
        return forms.BooleanField(**common)
    if spec.kind == "int":
        return forms.IntegerField(**common)
    if spec.kind == "json":
        return OptionalJSONField(widget=forms.Textarea(attrs={"rows": 3}), **common)
    if spec.kind == "choice":
        return forms.ChoiceField(choices=[("", "---------"), *[(c, c) for c in spec.choices]], **common)
    return forms.CharField(widget=forms.TextInput(attrs={"size": 60}), **common)


def _stored_credentials(endpoint: CcaasEndpoint) -> dict[str, Any]:
    """The endpoint's decrypted credentials; {} when new, or when no configured key decrypts them."""
    if not endpoint.pk or not is_readable(endpoint):
        return {}
    return dict(endpoint.credentials or {})


def kinds() -> list[tuple[str, type]]:
    return [(kind, connector_class(kind)) for kind in REGISTRY]


class EndpointForm(forms.ModelForm):
    kind = forms.ChoiceField(help_text="The contact center's kind; its settings appear below.")

    class Meta:
        model = CcaasEndpoint
        fields = ["slug", "name", "kind", "enabled", "is_default", "routing_order", "routing_rules"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [(kind, f"{cls.label} ({kind})") for kind, cls in kinds()]
        config = dict(self.instance.config or {}) if self.instance.pk else {}
        # Credentials no configured key decrypts (a key was removed): shown as such, entered again here.
        self.credentials_unreadable = bool(self.instance.pk) and not is_readable(self.instance)
        stored = _stored_credentials(self.instance)
        self.kind_fields: dict[str, dict[str, list[str]]] = {}
        for kind, cls in kinds():
            names: dict[str, list[str]] = {"config": [], "credentials": []}
            for spec in cls.config_fields:
                key = config_key(kind, spec.name)
                self.fields[key] = _form_field(spec, secret=False)
                if self.instance.pk and self.instance.kind == kind and spec.name in config:
                    self.initial[key] = config[spec.name]
                elif spec.default is not None:
                    self.initial[key] = spec.default
                names["config"].append(key)
            for spec in cls.credential_fields:
                key = credential_key(kind, spec.name)
                field = _form_field(spec, secret=True)
                is_set = self.instance.pk and self.instance.kind == kind and stored.get(spec.name)
                field.help_text = escape(
                    (
                        f"{spec.help} — currently set; leave blank to keep it"
                        if is_set
                        else f"{spec.help} — stored value cannot be decrypted with "
                        "BRIDGE_ENCRYPTION_KEYS; enter it again"
                        if self.credentials_unreadable and self.instance.kind == kind
                        else f"{spec.help} — not set"
                    ).lstrip(" —")
                )
                self.fields[key] = field
                names["credentials"].append(key)
            self.kind_fields[kind] = names

    def connector_fieldsets(self) -> list[tuple[str, dict[str, Any]]]:
        sets = []
        for kind, cls in kinds():
            names = self.kind_fields[kind]
            sets.append(
                (
                    f"{cls.label}: settings",
                    {"fields": names["config"], "classes": ("connector-kind", f"kind-{kind}")},
                )
            )
            if names["credentials"]:
                sets.append(
                    (
                        f"{cls.label}: credentials (write-only)",
                        {
                            "fields": names["credentials"],
                            "classes": ("connector-kind", f"kind-{kind}"),
                            "description": "Stored encrypted and never shown again. Leave a field blank "
                            "to keep its current value.",
                        },
                    )
                )
        return sets

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("kind")
        if not kind or kind not in REGISTRY:
            return data
        cls = connector_class(kind)
        same_kind = self.instance.pk and self.instance.kind == kind
        config = dict(self.instance.config or {}) if same_kind else {}
        credentials = _stored_credentials(self.instance) if same_kind else {}
        for spec in cls.config_fields:
            value = data.get(config_key(kind, spec.name))
            if value in (None, "") and spec.kind != "bool":
                config.pop(spec.name, None)
            else:
                config[spec.name] = value
        for spec in cls.credential_fields:
            value = data.get(credential_key(kind, spec.name))
            if value:
                credentials[spec.name] = value
        problems = cls.validate(config, credentials)
        names = {spec.name: config_key(kind, spec.name) for spec in cls.config_fields}
        names.update({spec.name: credential_key(kind, spec.name) for spec in cls.credential_fields})
        for problem in problems:
            # "config: 'base_url' must be ..." is shown at the base_url field, not above the form.
            field = next((key for name, key in names.items() if f"'{name}'" in problem), None)
            self.add_error(field, problem.split(": ", 1)[-1] if field else problem)
        self.connector_config, self.connector_credentials = config, credentials
        return data

    def save(self, commit: bool = True) -> CcaasEndpoint:
        endpoint = super().save(commit=False)
        endpoint.config = self.connector_config
        endpoint.credentials = self.connector_credentials
        if commit:
            endpoint.save()
        return endpoint


class CloseActionForm(ActionForm):
    reason = forms.CharField(
        required=False,
        max_length=500,
        label="Reason",
        help_text="Why (kept in the handover's timeline and the admin log); required for closing.",
        widget=forms.TextInput(attrs={"placeholder": "reason (required to close)", "size": 26}),
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False)


class ReopenForm(forms.Form):
    endpoint = forms.ModelChoiceField(
        queryset=CcaasEndpoint.objects.filter(enabled=True),
        required=True,
        help_text="The operator chooses the endpoint explicitly; there is no default.",
    )
