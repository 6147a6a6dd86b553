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
from typing import Any

from bridge.types import InfobipMessage

TEXT_MAX = 4096  # Infobip's limit for content.text
MEDIA_TYPES = ("IMAGE", "DOCUMENT", "VIDEO", "AUDIO", "FILE")
# Content types that a customer's choice (a tapped button, a picked list row) arrives as.
BUTTON_REPLIES = ("INTERACTIVE_BUTTON_REPLY", "BUTTON_REPLY", "BUTTON_RESPONSE", "POSTBACK", "QUICK_REPLY")
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
    return ", ".join(x for x in (str(name or "").strip(), phones, emails) if x)


def render_text(content_type: str, content: dict[str, Any]) -> str:
    """A readable, plain-text rendering of any content (with the link for media), e.g.
    `[Image] https://… caption`, `[Location] Shop, High St (51.17, -1.82) https://maps…`,
    `[Contact] Ana Li, +44…`, `[Button reply] Yes (yes-1)`."""
    content = content if isinstance(content, dict) else {}
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


def for_connector(message: InfobipMessage, *, attachments: bool) -> InfobipMessage:
    """The message as a connector should receive it: unchanged when it carries media and rich content
    itself (Capabilities.attachments), else anything but text rendered as a readable TEXT."""
    if attachments or message.content_type.upper() == "TEXT":
        return message
    return dataclasses.replace(
        message,
        content_type="TEXT",
        content={"text": render_text(message.content_type, message.content)},
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
        content["caption"] = caption[:TEXT_MAX]
    return kind, content


def split_text(text: str, limit: int = TEXT_MAX) -> list[str]:
    """Text in parts of at most `limit` characters, in order, preferring to cut at a line break or
    a space near the end of each part."""
    parts: list[str] = []
    while len(text) > limit:
        cut = max(text.rfind("\n", 0, limit + 1), text.rfind(" ", 0, limit + 1))
        if cut < limit // 2:
            cut = limit  # no good break: cut hard
        parts.append(text[:cut])
        text = text[cut:]
        if text[:1] in ("\n", " "):
            text = text[1:]
    parts.append(text)
    return parts


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
    return parts
