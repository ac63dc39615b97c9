"""GitHub App installations and the repositories they grant."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.base import bigint_field, utcnow


class Installation(SQLModel, table=True):
    """One installation of the App on an account."""

    __tablename__ = "installation"

    id: int = bigint_field(nullable=False, primary_key=True)
    account: str = Field(max_length=100)
    account_type: str | None = Field(default=None, max_length=32)
    repository_selection: str | None = Field(default=None, max_length=16)
    suspended_at: datetime | None = None
    deleted_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def active(self) -> bool:
        """An installation is acted on only while neither suspended nor deleted."""
        return is_active(self)


def is_active(row: object) -> bool:
    """The rule of Installation.active, for a model or a row with `suspended_at` and `deleted_at`."""
    return getattr(row, "suspended_at", None) is None and getattr(row, "deleted_at", None) is None


class InstallationRepository(SQLModel, table=True):
    """A repository an installation grants the App access to."""

    __tablename__ = "installation_repository"

    id: int = bigint_field(nullable=False, primary_key=True)  # GitHub's repository id
    installation_id: int = bigint_field(nullable=False, index=True)
    full_name: str = Field(max_length=140, index=True)
    removed_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)
