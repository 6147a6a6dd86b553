"""The bridge's whole error hierarchy.

Every external call ends as success, a TransientError (retried later, honouring Retry-After) or a
PermanentError (dead-lettered and shown to the operator). Error texts carry the upstream status and
the start of its body, never credentials.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""

    permanent = False


class ConfigurationError(BridgeError):
    """An endpoint or setting is missing or invalid; an operator must fix it."""

    permanent = True


class UpstreamError(BridgeError):
    """A call to Infobip or a contact center did not succeed."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str = "",
        retry_after: float | None = None,
        service: str = "",
    ) -> None:
        self.status = status
        self.body = body[:500]
        self.retry_after = retry_after
        self.service = service
        super().__init__(message)


class TransientError(UpstreamError):
    """Timeouts, connection errors, 408/409/425/429 and 5xx: try again later."""


class PermanentError(UpstreamError):
    """Any other 4xx: trying again will not help."""

    permanent = True


class UpstreamAuthError(PermanentError):
    """401/403: the credentials are wrong or lack rights; the endpoint is flagged."""


class NotFoundError(PermanentError):
    """404, or Infobip's 400 'No such entity exists'."""


class InteractionOverError(PermanentError):
    """The contact center answered that the interaction is over and takes nothing more (Zendesk's
    422 "Status: closed prevents ticket update", a Chatwoot conversation gone or resolved, an RT
    ticket gone, a Genesys session read-only, the generic protocol's 410). The handover then ends
    as the endpoint's `on_interaction_over` policy says, instead of dead-lettering the message."""


class ConversationClosedError(PermanentError):
    """Infobip answered that the conversation is closed and cannot be changed."""


class WebhookError(BridgeError):
    """A webhook request we refuse; carries the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        if status is not None:
            self.status = status
        super().__init__(message)


class SignatureError(WebhookError):
    status = 403


class CredentialsUnreadable(ConfigurationError):
    """Stored credentials no key of BRIDGE_ENCRYPTION_KEYS decrypts (a key was removed or mistyped).

    Not permanent: deliveries wait and retry on their schedule, with the endpoint showing this
    error, until the key is restored or the credentials are entered again."""

    permanent = False
