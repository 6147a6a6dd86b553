"""manage.py bridge_endpoint create|update|list|test: contact-center endpoints from the shell."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug
from django.db import transaction

from bridge import operations
from bridge.connectors import REGISTRY, connector_class
from bridge.exceptions import BridgeError
from bridge.fields import is_readable
from bridge.models import CcaasEndpoint

SLUG_MAX_LENGTH = CcaasEndpoint._meta.get_field("slug").max_length


def _json_object(value: str, what: str) -> dict:
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise CommandError(f"--{what} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CommandError(f"--{what} must be a JSON object")
    return data


def _routing_rules(value: str) -> list:
    example = '[{"tags_any": ["billing"]}]'
    try:
        rules = json.loads(value)
    except ValueError as exc:
        raise CommandError(f"--routing-rules is not valid JSON ({exc}); e.g. {example}") from exc
    if not isinstance(rules, list) or not all(isinstance(rule, dict) for rule in rules):
        raise CommandError(f"--routing-rules must be a JSON list of objects, e.g. {example}")
    return rules


def _checked_slug(slug: str) -> str:
    """A slug as the webhook URL and the escalation API take it (letters, digits, - and _)."""
    try:
        validate_slug(slug)
    except ValidationError as exc:
        raise CommandError(
            f"slug {slug!r} is not valid: use letters, digits, hyphens and underscores, e.g. acme-support"
        ) from exc
    if len(slug) > SLUG_MAX_LENGTH:
        raise CommandError(f"slug {slug!r} is too long: at most {SLUG_MAX_LENGTH} characters")
    return slug


class Command(BaseCommand):
    help = "Create, update, list and test contact-center endpoints (credentials are stored encrypted)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        for name in ("create", "update"):
            p = sub.add_parser(name, help=f"{name} an endpoint")
            p.add_argument("slug")
            p.add_argument("--kind", required=name == "create", choices=sorted(REGISTRY))
            p.add_argument("--name")
            p.add_argument("--config", help="JSON object; on update, merged into the current config")
            secret = p.add_mutually_exclusive_group()
            secret.add_argument(
                "--credentials",
                help="JSON object; on update, merged into the current credentials (visible to `ps` while the "
                "command runs: prefer --credentials-file or --credentials-env)",
            )
            secret.add_argument(
                "--credentials-file",
                metavar="PATH",
                help="read the credentials' JSON from a file, or - for standard input",
            )
            secret.add_argument(
                "--credentials-env",
                metavar="NAME",
                help="read the credentials' JSON from the environment variable NAME",
            )
            p.add_argument("--default", action="store_true", help="make this the default endpoint")
            p.add_argument("--routing-rules", help='JSON list, e.g. [{"tags_any": ["billing"]}]')
            if name == "update":
                p.add_argument("--enable", action="store_true")
                p.add_argument("--disable", action="store_true")
        sub.add_parser("list", help="list endpoints (never shows secrets)")
        p = sub.add_parser("test", help="check the connection; exits non-zero on failure")
        p.add_argument("slug")

    def handle(self, *args, action: str, **options) -> None:
        getattr(self, f"_{action}")(**options)

    def _save(self, endpoint: CcaasEndpoint, options: dict, *, creating: bool) -> None:
        if options.get("name") is not None:
            endpoint.name = options["name"]
        if options.get("config"):
            endpoint.config = {
                **({} if creating else endpoint.config),
                **_json_object(options["config"], "config"),
            }
        credentials = self._credentials_text(options)
        if credentials:
            new = _json_object(credentials, "credentials")
            # Unreadable stored credentials (a removed key) are replaced by the ones given here.
            kept = {} if creating or not is_readable(endpoint) else endpoint.credentials
            endpoint.credentials = {**kept, **new}
        if options.get("routing_rules"):
            endpoint.routing_rules = _routing_rules(options["routing_rules"])
        if options.get("enable"):
            endpoint.enabled = True
        if options.get("disable"):
            endpoint.enabled = False
        problems = connector_class(endpoint.kind).validate(endpoint.config, endpoint.credentials)
        if problems:
            raise CommandError("invalid endpoint:\n  " + "\n  ".join(problems))
        with transaction.atomic():
            if options.get("default"):
                CcaasEndpoint.objects.exclude(pk=endpoint.pk).filter(is_default=True).update(is_default=False)
                endpoint.is_default = True
            endpoint.save()

    def _credentials_text(self, options: dict) -> str | None:
        """The credentials' JSON from --credentials, --credentials-file (a path, or - for standard input) or
        --credentials-env; never echoed."""
        path, variable = options.get("credentials_file"), options.get("credentials_env")
        if path == "-":
            return sys.stdin.read()
        if path:
            try:
                return Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"--credentials-file: cannot read {path}: {exc.strerror}") from exc
        if variable:
            value = os.environ.get(variable)
            if value is None:
                raise CommandError(f"--credentials-env: the environment variable {variable} is not set")
            return value
        return options.get("credentials")

    def _create(self, slug: str, kind: str, **options) -> None:
        _checked_slug(slug)
        if CcaasEndpoint.objects.filter(slug=slug).exists():
            raise CommandError(f"endpoint {slug!r} exists; use 'update'")
        endpoint = CcaasEndpoint(slug=slug, kind=kind)
        self._save(endpoint, options, creating=True)
        self.stdout.write(f"created {slug} ({kind}); webhook URL: {endpoint.webhook_url()}")

    def _update(self, slug: str, kind: str | None = None, **options) -> None:
        endpoint = CcaasEndpoint.objects.filter(slug=slug).first()
        if endpoint is None:
            raise CommandError(f"no endpoint {slug!r}")
        if kind:
            endpoint.kind = kind
        self._save(endpoint, options, creating=False)
        self.stdout.write(f"updated {slug}")

    def _list(self, **options) -> None:
        rows = CcaasEndpoint.objects.all()
        if not rows:
            self.stdout.write(
                "no endpoints; create one with: .venv/bin/python manage.py bridge_endpoint create SLUG --kind generic ..."
            )
            return
        for e in rows:
            flags = (
                ",".join(f for f, on in (("default", e.is_default), ("disabled", not e.enabled)) if on) or "-"
            )
            secrets = ",".join(sorted(e.credentials or {})) or "none" if is_readable(e) else "UNREADABLE"
            self.stdout.write(
                f"{e.slug}\t{e.kind}\t{e.mode}\t{'polled' if e.polled else 'not polled'}\t{flags}\tconfig={json.dumps(e.config, sort_keys=True)}\t"
                f"credentials=[{secrets}]\tlast_error={(e.last_error or '-')[:80]}"
            )

    def _test(self, slug: str, **options) -> None:
        endpoint = CcaasEndpoint.objects.filter(slug=slug).first()
        if endpoint is None:
            raise CommandError(f"no endpoint {slug!r}")
        try:
            answer = operations.test_connection(endpoint)
        except BridgeError as exc:
            raise CommandError(f"{slug}: {exc}") from exc
        self.stdout.write(f"{slug}: ok: {answer}")
