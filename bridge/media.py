"""Message content, in one place: what kind of content a message carries, how any content reads as
plain text for a contact center that cannot carry it in its own form, and how an agent's message
becomes the Create Message requests Infobip needs.

Content shapes follow Infobip's Create Message examples (TEXT `text`; IMAGE/DOCUMENT/VIDEO `url`
(+ `caption`); AUDIO `url`; LOCATION `latitude`/`longitude` (+ `locationName`, `address`); CONTACT
`contacts`). Interactive replies use the content types Infobip's spec names for inbound messages
(INTERACTIVE_BUTTON_REPLY, INTERACTIVE_LIST_REPLY, BUTTON_RESPONSE, LIST_PICKER_RESPONSE, POSTBACK,
QUICK_REPLY, SUGGESTION_RESPONSE); their content (`id`, `title`, `description`, `payload`) is read
leniently, because the spec does not show it. Reference:
https://www.infobip.com/docs/api/customer-engagement/conversations/create-message
"""

from __future__ import annotations

import dataclasses
from datetime import UTC
from typing import Any

from bridge.types import InfobipMessage

TEXT_MAX = 4096  # Infobip's limit for content.text
QUOTE_MAX = 200  # characters of a replied-to message quoted in a reply
MEDIA_TYPES = ("IMAGE", "DOCUMENT", "VIDEO", "AUDIO", "FILE")
# Content types that a customer's choice (a tapped button, a picked list row) arrives as.
# BUTTON is the legacy webhook's quick-reply tap: {"text": <button text>, "payload": <its payload>}.
BUTTON_REPLIES = (
    "INTERACTIVE_BUTTON_REPLY",
    "BUTTON_REPLY",
    "BUTTON_RESPONSE",
    "BUTTON",
    "POSTBACK",
    "QUICK_REPLY",
)
LIST_REPLIES = ("INTERACTIVE_LIST_REPLY", "LIST_REPLY", "LIST_PICKER_RESPONSE")
CHOICE_REPLIES = (*BUTTON_REPLIES, *LIST_REPLIES, "SUGGESTION_RESPONSE")
_EXTENSIONS = {
    "IMAGE": (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".heic"),
    "VIDEO": (".mp4", ".mov", ".3gp", ".webm", ".avi", ".mkv"),
    "AUDIO": (".mp3", ".ogg", ".oga", ".opus", ".wav", ".aac", ".m4a", ".amr"),
}
_DOCUMENT_EXTENSIONS = (".pdf", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".txt", ".csv", ".zip")


def derive_content_type(content: Any) -> str | None:
    """Infobip's contentType for a content object that carries none (Subscriptions events), or None
    when the content alone cannot tell (the caller then fetches the message)."""
    if not isinstance(content, dict) or not content:
        return None
    declared = content.get("type") or content.get("contentType")
    if isinstance(declared, str) and declared.isupper():
        return declared
    if "latitude" in content and "longitude" in content:
        return "LOCATION"
    if "contacts" in content:
        return "CONTACT"
    if {"id", "title"} <= content.keys() and "url" not in content:
        if "description" in content or "sectionId" in content:
            return "INTERACTIVE_LIST_REPLY"
        return "INTERACTIVE_BUTTON_REPLY"
    url = content.get("url") or content.get("mediaUrl")
    if (
        not url
        and content.get("payload") not in (None, "")
        and not isinstance(content.get("payload"), dict)
        and (content.get("text") or content.get("title"))
    ):
        return "BUTTON"  # a quick-reply tap: its payload is what the bot (and the agent) acts on
    if isinstance(url, str) and url:
        kind = kind_from_name(url)
        if kind:
            return kind
        if content.get("filename"):
            return "DOCUMENT"
        return None  # a link whose kind the URL does not show
    if isinstance(content.get("text"), str):
        return "TEXT"
    return None


def kind_from_name(name: str) -> str | None:
    """IMAGE, VIDEO, AUDIO or DOCUMENT from a file name or URL's extension, else None."""
    path = str(name or "").split("?", 1)[0].split("#", 1)[0].lower()
    for kind, extensions in _EXTENSIONS.items():
        if path.endswith(extensions):
            return kind
    if path.endswith(_DOCUMENT_EXTENSIONS):
        return "DOCUMENT"
    return None


# --- customer -> contact center ------------------------------------------------------------------
def _clean(*parts: Any) -> str:
    return " ".join(str(p).strip() for p in parts if p not in (None, "") and str(p).strip())


def _contact_line(contact: dict[str, Any]) -> str:
    name = contact.get("name") or {}
    if isinstance(name, dict):
        # WhatsApp examples use snake_case, Viber bot examples camelCase.
        name = (
            name.get("formattedName")
            or name.get("formatted_name")
            or _clean(
                name.get("firstName") or name.get("first_name"), name.get("lastName") or name.get("last_name")
            )
        )
    phones = ", ".join(
        str(p.get("phone") or p.get("number") or "")
        for p in contact.get("phones") or []
        if isinstance(p, dict) and (p.get("phone") or p.get("number"))
    )
    emails = ", ".join(
        str(e.get("email")) for e in contact.get("emails") or [] if isinstance(e, dict) and e.get("email")
    )
    org = contact.get("org") if isinstance(contact.get("org"), dict) else {}
    company = _clean(org.get("company"), org.get("title"))
    urls = ", ".join(
        str(u.get("url")) for u in contact.get("urls") or [] if isinstance(u, dict) and u.get("url")
    )
    addresses = "; ".join(
        _clean(*(a.get(k) for k in ("street", "city", "zip", "state", "country")))
        for a in contact.get("addresses") or []
        if isinstance(a, dict)
    )
    return ", ".join(
        x for x in (str(name or "").strip(), company, phones, emails, urls, addresses.strip("; ")) if x
    )


def render_text(content_type: str, content: dict[str, Any]) -> str:
    """A readable, plain-text rendering of any content (with the link for media), e.g.
    `[Image] https://… caption`, `[Location] Shop, High St (51.17, -1.82) https://maps…`,
    `[Contact] Ana Li, +44…`, `[Button reply] Yes, book it (BOOK_SLOT_0930)`; a reply to an
    earlier message ends with `(in reply to: "…")`."""
    content = content if isinstance(content, dict) else {}
    text = _render(content_type, content)
    reply = content.get("replyTo")
    if isinstance(reply, dict) and (reply.get("text") or reply.get("id")):
        quoted = str(reply.get("text") or "").strip()
        if len(quoted) > QUOTE_MAX:
            quoted = quoted[: QUOTE_MAX - 1] + "…"  # a quote of an earlier message, shown in full there
        about = f'in reply to: "{quoted}"' if quoted else f"in reply to message {reply.get('id')}"
        text = _clean(text, f"({about})")
    return text


def _render(content_type: str, content: dict[str, Any]) -> str:
    kind = (content_type or "TEXT").upper()
    text = content.get("text")
    if kind == "TEXT":
        return str(text or "")
    if kind in MEDIA_TYPES:
        caption = content.get("caption") or text
        name = content.get("filename") or content.get("name")
        label = "File" if kind == "FILE" else kind.capitalize()
        url = content.get("url") or content.get("mediaUrl") or ""
        return _clean(f"[{label}]", url, f"({name})" if name and name not in str(url) else "", caption)
    if kind == "LOCATION":
        lat, lon = content.get("latitude"), content.get("longitude")
        where = ", ".join(
            str(content[k]).strip() for k in ("locationName", "name", "address") if content.get(k)
        )
        return _clean("[Location]", where, f"({lat}, {lon})", f"https://maps.google.com/?q={lat},{lon}")
    if kind == "CONTACT":
        lines = [_contact_line(c) for c in content.get("contacts") or [] if isinstance(c, dict)]
        return _clean("[Contact]", "; ".join(line for line in lines if line) or "(empty)")
    if kind in CHOICE_REPLIES:
        label = "List reply" if kind in LIST_REPLIES else "Button reply"
        title = content.get("title") or text or content.get("label") or ""
        payload = content.get("payload") or content.get("id") or content.get("postbackData") or ""
        description = content.get("description")
        return _clean(
            f"[{label}]",
            title or payload,
            f"— {description}" if description else "",
            f"({payload})" if payload and title and str(payload) != str(title) else "",
        )
    if isinstance(text, str) and text:
        return _clean(f"[{kind.replace('_', ' ').capitalize()}]", text)
    url = content.get("url")
    return _clean(f"[{kind.replace('_', ' ').capitalize()}]", url if isinstance(url, str) else "")


def reply_reference(content: Any, raw: Any = None) -> str:
    """The id of the earlier message a customer's message answers, where Infobip (or the channel
    behind it) says so: `context.id` (WhatsApp), `replyTo`, `replyToMessageId`; "" otherwise."""
    for source in (content, raw):
        if not isinstance(source, dict):
            continue
        context = source.get("context")
        if isinstance(context, dict) and (context.get("id") or context.get("messageId")):
            return str(context.get("id") or context.get("messageId"))
        reply = source.get("replyTo")
        if isinstance(reply, dict) and (reply.get("id") or reply.get("messageId")):
            return str(reply.get("id") or reply.get("messageId"))
        if isinstance(reply, str) and reply:
            return reply
        if source.get("replyToMessageId"):
            return str(source["replyToMessageId"])
    return ""


def recovered_mark(message: InfobipMessage) -> str:
    """The visible mark of a message that reached the bridge late (found by reconciliation, so later
    messages may have gone first), with the time the customer wrote it; "" for any other message."""
    if not message.recovered:
        return ""
    when = message.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"[Recovered, sent late: written {when}]"


def for_connector(
    message: InfobipMessage, *, attachments: bool, recovered_field: bool = False
) -> InfobipMessage:
    """The message as a connector should receive it: unchanged when it carries media and rich content
    itself (Capabilities.attachments), else anything but a plain text rendered as a readable TEXT
    (a text that answers an earlier message carries the quote).

    A recovered message (found late by reconciliation) gets its visible mark, with the time it was
    written, in front of what the agent reads, unless the connector carries the mark as a field of
    its own (Capabilities.recovered_field): media keep their kind and carry it in the caption."""
    # A text that answers an earlier message is rendered too, so it carries the quote.
    plain = message.content_type.upper() == "TEXT" and not isinstance(message.content.get("replyTo"), dict)
    if not (attachments or plain):
        message = dataclasses.replace(
            message,
            content_type="TEXT",
            content={"text": render_text(message.content_type, message.content)},
        )
    mark = recovered_mark(message)
    if not mark or recovered_field:
        return message
    kind = message.content_type.upper()
    content = dict(message.content or {})
    if kind in MEDIA_TYPES:
        caption = content.get("caption") or content.get("text")
        content["caption"] = f"{mark} {caption}" if caption else mark
        return dataclasses.replace(message, content=content)
    text = render_text(message.content_type, message.content)
    return dataclasses.replace(
        message, content_type="TEXT", content={"text": f"{mark} {text}" if text else mark}
    )


# --- contact center -> customer ------------------------------------------------------------------
def has_content(content_type: str, content: Any) -> bool:
    """Whether a message has anything to show: a non-blank text, a media link, a location, a
    contact, a choice, or an attachment with a link. An agent event without any (a Chatwoot
    message with `"content": null` and no attachments, a Zendesk comment with an empty body) must
    never become an empty message for the customer."""
    if not isinstance(content, dict):
        return False
    if any(isinstance(a, dict) and a.get("url") for a in content.get("attachments") or []):
        return True
    kind = (content_type or "TEXT").upper()
    if kind == "TEXT":
        return isinstance(content.get("text"), str) and bool(content["text"].strip())
    if kind in MEDIA_TYPES:
        return bool(content.get("url") or content.get("mediaUrl"))
    if kind == "LOCATION":
        return content.get("latitude") is not None and content.get("longitude") is not None
    return any(value not in (None, "", [], {}) for key, value in content.items() if key != "attachments")


def agent_attachment(
    url: str, *, mime_type: str = "", filename: str = "", caption: str = ""
) -> tuple[str, dict]:
    """The Infobip (contentType, content) for an agent's attachment, from its MIME type or name:
    IMAGE/DOCUMENT/VIDEO `{"url", "caption"}`, AUDIO `{"url"}`."""
    mime = (mime_type or "").lower().split(";", 1)[0].strip()
    if mime.startswith("image/"):
        kind = "IMAGE"
    elif mime.startswith("video/"):
        kind = "VIDEO"
    elif mime.startswith("audio/"):
        kind = "AUDIO"
    elif mime in ("image", "video", "audio"):  # Chatwoot's file_type
        kind = mime.upper()
    elif mime and mime not in ("application/octet-stream", "file"):
        kind = "DOCUMENT"
    else:
        kind = kind_from_name(filename) or kind_from_name(url) or "DOCUMENT"
    content: dict[str, Any] = {"url": url}
    if caption and kind in ("IMAGE", "VIDEO", "DOCUMENT"):
        content["caption"] = caption  # outbound_parts moves a caption over the limit into text
    return kind, content


UNITS = ("characters", "utf16", "bytes")


def measure(text: str, unit: str = "characters") -> int:
    """The length of `text` in the unit a target counts: Unicode characters (code points), UTF-16
    code units (an emoji outside the BMP counts 2), or UTF-8 bytes."""
    if unit == "bytes":
        return len(text.encode("utf-8"))
    if unit == "utf16":
        return len(text.encode("utf-16-le")) // 2
    return len(text)


def _fit(text: str, limit: int, unit: str) -> int:
    """The number of leading characters of `text` whose length in `unit` is within `limit`."""
    if unit == "characters":
        return min(limit, len(text))
    size = 0
    for index, char in enumerate(text):
        size += measure(char, unit)
        if size > limit:
            return index
    return len(text)


def split_text(text: str, limit: int = TEXT_MAX, unit: str = "characters") -> list[str]:
    """Text in parts of at most `limit` (counted in `unit`, see `measure`), in order, preferring to
    cut at a line break or a space near the end of each part (that one break is dropped)."""
    if limit < 1:
        raise ValueError("a text limit must be at least 1")
    parts: list[str] = []
    while measure(text, unit) > limit:
        fit = max(1, _fit(text, limit, unit))
        cut = max(text.rfind("\n", 0, fit), text.rfind(" ", 0, fit))
        if cut < fit // 2:
            cut = fit  # no good break: cut hard (between characters, never inside one)
        parts.append(text[:cut])
        text = text[cut:]
        if text[:1] in ("\n", " "):
            text = text[1:]
    parts.append(text)
    return parts


def split_for_limit(message: InfobipMessage, limit: int, unit: str = "characters") -> list[InfobipMessage]:
    """A customer-side message as the parts a contact center that takes at most `limit` (in `unit`)
    a message needs, in order; the message itself when it fits (or when `limit` is 0, no limit).

    A message over the limit goes as TEXT parts of its readable rendering (a media link stays in
    the text); the first part keeps the message id, the others are `<id>:2`, `<id>:3`, ... so each
    is recorded and sent once. A recovered message's mark is already in its text (for_connector),
    so it counts against the limit and leads the first part."""
    if not limit:
        return [message]
    text = render_text(message.content_type, message.content)
    if measure(text, unit) <= limit:
        return [message]
    pieces = split_text(text, limit, unit)
    return [
        dataclasses.replace(
            message,
            id=message.id if n == 0 else f"{message.id}:{n + 1}",
            content_type="TEXT",
            content={"text": piece},
        )
        for n, piece in enumerate(pieces)
    ]


def outbound_parts(content_type: str, content: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The Create Message requests, as (contentType, content) in sending order, for one agent
    message: its text (split when longer than Infobip's 4,096 characters), then one message per
    attachment (`content["attachments"]`: [{"url", "mimeType"?, "filename"?}]). Any other content
    type goes as it is. A message with nothing to show (see `has_content`) has no parts."""
    content = dict(content or {})
    attachments = content.pop("attachments", None) or []
    kind = (content_type or "TEXT").upper()
    parts: list[tuple[str, dict[str, Any]]] = []
    if kind == "TEXT":
        text = content.get("text")
        if isinstance(text, str) and text.strip():
            parts += [("TEXT", {**content, "text": piece}) for piece in split_text(text)]
    elif has_content(kind, content):
        parts.append((kind, content))
    for item in attachments:
        if not isinstance(item, dict) or not item.get("url"):
            continue
        parts.append(
            agent_attachment(
                str(item["url"]),
                mime_type=str(item.get("mimeType") or item.get("contentType") or ""),
                filename=str(item.get("filename") or ""),
                caption=str(item.get("caption") or ""),
            )
        )
    return [piece for part in parts for piece in _caption_within_limit(part)]


def _caption_within_limit(part: tuple[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """A media part whose caption is longer than Infobip takes goes without it, followed by the
    caption as text parts: nothing of it is cut."""
    kind, content = part
    caption = content.get("caption")
    if kind == "TEXT" or not isinstance(caption, str) or len(caption) <= TEXT_MAX:
        return [part]
    media_part = {k: v for k, v in content.items() if k != "caption"}
    return [(kind, media_part), *[("TEXT", {"text": piece}) for piece in split_text(caption)]]
