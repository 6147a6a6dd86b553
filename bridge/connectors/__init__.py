"""The connector registry: a plain dict from kind to dotted path. No auto-discovery."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from django.utils.module_loading import import_string

from bridge.exceptions import ConfigurationError

if TYPE_CHECKING:
    from bridge.connectors.base import Connector
    from bridge.models import CcaasEndpoint

REGISTRY: dict[str, str] = {
    "generic": "bridge.connectors.generic.GenericConnector",
    "rt": "bridge.connectors.rt.RtConnector",
    "zendesk": "bridge.connectors.zendesk.ZendeskConnector",
    "chatwoot": "bridge.connectors.chatwoot.ChatwootConnector",
    "genesys": "bridge.connectors.genesys.GenesysConnector",
}


@cache
def connector_class(kind: str) -> type[Connector]:
    try:
        path = REGISTRY[kind]
    except KeyError:
        raise ConfigurationError(
            f"unknown connector kind {kind!r}; known: {', '.join(sorted(REGISTRY))}"
        ) from None
    return import_string(path)


def get_connector(endpoint: CcaasEndpoint) -> Connector:
    return connector_class(endpoint.kind)(endpoint)


def kind_choices() -> list[tuple[str, str]]:
    return [(kind, connector_class(kind).label) for kind in REGISTRY]
