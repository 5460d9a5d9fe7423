"""Keep secrets out of logs and messages: URL credentials, query strings, bearer tokens."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s'\"]+@)?"
                  r"(?P<rest>[^\s?#'\"]*)(?P<query>\?[^\s#'\"]*)?")
# A placeholder such as ``Bearer <key>`` (in a message telling what to send) is not a secret:
# masking it would garble the message.
_PLACEHOLDER = r"(?!<[\w.-]*>)"
_BEARER = re.compile(r"(?i)(bearer\s+)" + _PLACEHOLDER + r"[^\s'\",]+")
_KEYVAL = re.compile(r"(?i)((?:api[_-]?key|apikey|token|secret|password|service_role_key)"
                     r"\s*[=:]\s*)" + _PLACEHOLDER + r"[^\s'\",&]+")


def redact_url(url: str) -> str:
    """``url`` without credentials, query string or fragment: safe to log and to show.

    ``https://user:pw@host/v.mp4?sig=abc`` -> ``https://***@host/v.mp4?***``.
    """
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = ("***@" if "@" in parts.netloc else "") + host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "",
                       "***" if parts.fragment else ""))


def redact_text(text: str) -> str:
    """``text`` with URL userinfo and query strings, bearer tokens and key=value secrets masked."""
    def url(m: re.Match[str]) -> str:
        return (m["scheme"] + ("***@" if m["userinfo"] else "") + m["rest"]
                + ("?***" if m["query"] else ""))

    text = _URL.sub(url, text)
    text = _BEARER.sub(r"\1***", text)
    return _KEYVAL.sub(r"\1***", text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record's formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is left as it is
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Add the filter to the root logger's handlers (and ``logger``), once."""
    targets: list[logging.Filterer] = [logger] if logger else []
    root = logging.getLogger()
    targets += [root, *root.handlers]
    for t in targets:
        if not any(isinstance(f, RedactingFilter) for f in t.filters):
            t.addFilter(RedactingFilter())
