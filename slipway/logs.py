"""Logging: JSON or text lines that carry the delivery GUID and never a secret, token or key."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any

# GitHub tokens, JWTs, PEM blocks, Slipway API keys, Authorization values.
SECRET_PATTERNS = [
    re.compile(r"gh[pousr]_[A-Za-z0-9_]{20,}"),
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r"slw_[A-Za-z0-9_-]{20,}"),
    re.compile(r"(?i)(authorization|x-workspace-key)[\"']?\s*[:=]\s*[\"']?[^\s\"',}]+(\s+[^\s\"',}]+)?"),
]
# Extra fields (and dict keys inside them) whose value is a credential whatever its shape.
SENSITIVE_KEY = re.compile(r"(?i)^(authorization|x-workspace-key|x-hub-signature(-256)?|cookie|set-cookie|password|"
                           r"secret|.*_secret|token|access_token|private_key|pem|api_key)$")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class Redactor(logging.Filter):
    """Replaces known secret shapes and the configured secrets with [redacted]."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets = [s for s in (secrets or []) if len(s) >= 4]

    def scrub(self, text: str) -> str:
        """The text with every secret replaced."""
        for pattern in SECRET_PATTERNS:
            text = pattern.sub("[redacted]", text)
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def scrub_value(self, value: Any, depth: int = 0) -> Any:
        """A structured extra with every string inside scrubbed; values under secret-named keys dropped."""
        if isinstance(value, str):
            return self.scrub(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if depth > 8:
            return "[redacted]"  # deeper than anything Slipway logs: do not walk it
        if isinstance(value, dict):
            return {self.scrub(str(k)): "[redacted]" if SENSITIVE_KEY.search(str(k))
                    else self.scrub_value(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.scrub_value(v, depth + 1) for v in value]
        return self.scrub(str(value))  # formatters would render it with str() anyway

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, scrub it, and freeze it on the record."""
        record.msg = self.scrub(record.getMessage())
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and not key.startswith("_"):
                # Structured extras (dicts of headers, lists) are rendered by the formatters: scrub inside them.
                setattr(record, key, "[redacted]" if SENSITIVE_KEY.search(key) and isinstance(value, str | bytes)
                        else self.scrub_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_text or record.exc_info:
            out["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """Human lines with the extra fields appended as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_"))
        return f"{base} {extra}" if extra else base


def setup(level: str = "info", fmt: str = "json", secrets: list[str] | None = None) -> None:
    """Configure the root logger once for this process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Redactor(secrets))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "rq.worker", "rq.queue", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
