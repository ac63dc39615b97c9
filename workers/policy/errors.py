"""The error that every invalid configuration value raises."""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid `.github/slipway.yml` (or freeze window), with the line when known.

    It subclasses ValueError so that pydantic validators can raise it and keep its reason.
    """

    def __init__(self, line: int | None, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line is not None else self.reason
