"""Message content: derive Infobip's content type from a content object, and render any content as
readable text for a contact center that cannot carry it in its own form.

Content shapes follow Infobip's Create Message schemas (TEXT `text`; IMAGE/DOCUMENT/VIDEO/AUDIO `url`
(+ `caption`, `filename`); LOCATION `latitude`/`longitude` (+ `name`, `address`); CONTACT `contacts`;
BUTTON_REPLY / LIST_REPLY `id`/`title`). Reference:
https://www.infobip.com/docs/api/customer-engagement/conversations/create-message
"""

from __future__ import annotations

from typing import Any

MEDIA_TYPES = ("IMAGE", "DOCUMENT", "VIDEO", "AUDIO", "FILE")
_EXTENSIONS = {
    "IMAGE": (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".heic"),
    "VIDEO": (".mp4", ".mov", ".3gp", ".webm", ".avi", ".mkv"),
    "AUDIO": (".mp3", ".ogg", ".oga", ".opus", ".wav", ".aac", ".m4a", ".amr"),
}


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
        return "LIST_REPLY" if "description" in content or "sectionId" in content else "BUTTON_REPLY"
    url = content.get("url") or content.get("mediaUrl")
    if isinstance(url, str) and url:
        path = url.split("?", 1)[0].lower()
        for kind, extensions in _EXTENSIONS.items():
            if path.endswith(extensions):
                return kind
        if content.get("filename") or path.endswith(
            (".pdf", ".doc", ".docx", ".xls", ".xlsx", ".txt", ".csv")
        ):
            return "DOCUMENT"
        return None  # a link whose kind the URL does not show
    if isinstance(content.get("text"), str):
        return "TEXT"
    return None


def render_text(content_type: str, content: dict[str, Any]) -> str:
    """A readable, plain-text rendering of any content (with the link for media)."""
    content = content or {}
    kind = (content_type or "TEXT").upper()
    text = content.get("text")
    if kind == "TEXT":
        return str(text or "")
    if kind in MEDIA_TYPES:
        label = kind.capitalize()
        parts = [f"[{label}] {content.get('url', '')}".rstrip()]
        name = content.get("filename") or content.get("name")
        if name:
            parts.append(f"({name})")
        caption = content.get("caption") or text
        if caption:
            parts.append(f"— {caption}")
        return " ".join(parts)
    if kind == "LOCATION":
        where = f"{content.get('latitude')},{content.get('longitude')}"
        label = ", ".join(str(content[k]) for k in ("name", "address") if content.get(k))
        link = f"https://maps.google.com/?q={where}"
        return f"[Location] {label + ' ' if label else ''}{link}"
    if kind == "CONTACT":
        lines = []
        for contact in content.get("contacts") or []:
            name = contact.get("name") or {}
            if isinstance(name, dict):
                name = name.get("formattedName") or " ".join(
                    str(name[k]) for k in ("firstName", "lastName") if name.get(k)
                )
            phones = ", ".join(
                str(p.get("phone") or p.get("number") or "") for p in contact.get("phones") or [] if p
            )
            emails = ", ".join(str(e.get("email") or "") for e in contact.get("emails") or [] if e)
            lines.append(" ".join(x for x in (str(name or "").strip(), phones, emails) if x))
        return "[Contact] " + "; ".join(line for line in lines if line)
    if kind in ("BUTTON_REPLY", "LIST_REPLY", "BUTTON", "LIST"):
        title = content.get("title") or text or content.get("id") or ""
        return f"[Choice] {title}"
    if text:
        return str(text)
    return f"[{kind}]"


def agent_attachment(
    url: str, *, mime_type: str = "", filename: str = "", caption: str = ""
) -> tuple[str, dict]:
    """The Infobip (contentType, content) for an agent's attachment, from its MIME type or name."""
    mime = (mime_type or "").lower()
    if mime.startswith("image/"):
        kind = "IMAGE"
    elif mime.startswith("video/"):
        kind = "VIDEO"
    elif mime.startswith("audio/"):
        kind = "AUDIO"
    elif mime:
        kind = "DOCUMENT"
    else:
        kind = derive_content_type({"url": url, "filename": filename}) or "DOCUMENT"
    content: dict[str, Any] = {"url": url}
    if caption and kind in ("IMAGE", "VIDEO", "DOCUMENT"):
        content["caption"] = caption
    if filename and kind == "DOCUMENT":
        content["filename"] = filename
    return kind, content
