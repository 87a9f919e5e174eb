"""Parameters shared by the container jobs: which container, and which of its blobs.

Validated at submission, so a bad filter is a 400 naming the field instead of
a failed task. Sizes are in MiB (1,048,576 bytes), as the reference's `size_mb`.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from coremachine.shared.blobstore import validate_container_name

MAX_EXTENSIONS = 100


class ContainerFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    container_name: str = Field(description="the blob container to read (Azure naming rules)")
    prefix: str | None = Field(None, max_length=1024, description="only blobs whose name starts so")
    extensions: list[str] | None = Field(
        None,
        max_length=MAX_EXTENSIONS,
        description='only these extensions, e.g. [".tif", "json"] (case-insensitive)',
    )
    min_size_mb: float | None = Field(None, ge=0, description="only blobs at least this large")
    max_size_mb: float | None = Field(None, ge=0, description="only blobs at most this large")
    modified_after: dt.datetime | None = Field(
        None, description="only blobs last modified strictly after (naive = UTC)"
    )
    modified_before: dt.datetime | None = Field(
        None, description="only blobs last modified strictly before (naive = UTC)"
    )

    @field_validator("container_name")
    @classmethod
    def _container_name(cls, value: str) -> str:
        return validate_container_name(value)

    @field_validator("extensions")
    @classmethod
    def _extensions(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        normalized = []
        for extension in value:
            cleaned = extension.strip().lower()
            cleaned = cleaned if cleaned.startswith(".") else f".{cleaned}"
            if cleaned == "." or "/" in cleaned or "." in cleaned[1:]:
                raise ValueError(f"{extension!r} is not a file extension like '.tif'")
            normalized.append(cleaned)
        # Sorted and unique: the same filter always derives the same job id.
        return sorted(set(normalized))

    @field_validator("modified_after", "modified_before")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value

    # Range checks name the upper bound, so the 400 says which field to fix.
    @field_validator("max_size_mb")
    @classmethod
    def _size_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("min_size_mb")
        if value is not None and low is not None and value < low:
            raise ValueError(f"must be at least min_size_mb ({low})")
        return value

    @field_validator("modified_before")
    @classmethod
    def _date_range(cls, value: dt.datetime | None, info: ValidationInfo) -> dt.datetime | None:
        low = info.data.get("modified_after")
        if value is not None and low is not None and value <= low:
            raise ValueError(f"must be later than modified_after ({low.isoformat()})")
        return value
