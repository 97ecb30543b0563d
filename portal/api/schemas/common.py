"""What every part of the API shares: the error body, timestamps, sources, the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Source = Literal["manager", "installer", "fleet"]


# ISO 8601 in UTC with a Z ("2026-12-07T09:12:01Z"): RFC 3339's date-time.
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class Error(BaseModel):
    """The one error body: a message, and details per field where there are some."""

    error: str
    details: dict[str, Any]


class OpenAPIDocument(BaseModel):
    """An OpenAPI 3.1 document."""

    model_config = ConfigDict(extra="allow")

    openapi: str
