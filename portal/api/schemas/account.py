"""The signed-in user: preferences, re-authentication, second factors, API tokens."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ...environments.service import (
    MAX_PASSWORD,
)
from ...platform.http import MAX_ID
from .common import Timestamp


class Preferences(BaseModel):
    """The user's preferences."""

    dashboard_view: Literal["cards", "list"]
    time_zone: Literal["local", "utc"] = Field(
        description="Exact times in the browser's time zone or in UTC"
    )


class PreferencesIn(BaseModel):
    """Preferences to change; others are kept."""

    model_config = ConfigDict(extra="forbid")

    dashboard_view: Literal["cards", "list"] | None = None
    time_zone: Literal["local", "utc"] | None = None


class PreferencesOut(BaseModel):
    """The user's preferences after the change."""

    preferences: Preferences


class Me(BaseModel):
    """The signed-in user."""

    username: str
    role: Literal["member", "auditor", "readonly", "admin"] = Field(
        description="The effective global role: the highest of the own role and the groups'"
    )
    recent_auth: bool
    second_factor_required: bool = Field(
        description="The policy requires a second factor this user has not set up yet: "
        "nothing but /me and /me/second-factor answers until one is confirmed"
    )
    preferences: Preferences


class ReauthIn(BaseModel):
    """The signed-in user's password, typed again before a sensitive action such as an export."""

    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    purpose: Literal["export"] | None = Field(
        None, description="What the password is for; a wrong one is audited as a denied export"
    )
    environment_id: int | None = Field(
        None, ge=1, le=MAX_ID, description="The environment to export from; none: every one"
    )


class PasswordIn(BaseModel):
    """The signed-in user's current password, required to change their second factors."""

    model_config = ConfigDict(extra="forbid", strict=True)

    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class TotpStarted(BaseModel):
    """A new authenticator-app secret, shown this once; the first code confirms it."""

    secret: str = Field(description="Base32 secret to type into the app")
    otpauth_uri: str = Field(description="otpauth:// URI, the content of the QR code")


class CodeIn(BaseModel):
    """A 6-digit code from the authenticator app."""

    model_config = ConfigDict(extra="forbid", strict=True)

    code: str = Field(min_length=1, max_length=64)


class RecoveryCodes(BaseModel):
    """Ten single-use recovery codes, shown this once (kept only as hashes)."""

    recovery_codes: list[str]


class TotpState(BaseModel):
    enabled: bool
    confirmed_at: Timestamp | None
    pending: bool = Field(description="An app is being set up and waits for its first code")


class PasskeyOut(BaseModel):
    id: int
    name: str
    created_at: Timestamp | None
    last_used_at: Timestamp | None


class SecondFactors(BaseModel):
    """The signed-in user's second factors (never a secret)."""

    totp: TotpState
    passkeys: list[PasskeyOut]
    recovery_codes_left: int
    required: bool = Field(description="The policy requires this user to have a factor")


class PasskeyOptions(BaseModel):
    """PublicKeyCredentialCreationOptions (WebAuthn), binary fields in base64url."""

    model_config = ConfigDict(extra="allow")

    challenge: str
    rp: dict[str, Any]
    user: dict[str, Any]


class PasskeyIn(BaseModel):
    """The browser's registration response (PublicKeyCredential as JSON) and a name."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=64)
    credential: dict[str, Any]


class PasskeyAdded(BaseModel):
    passkey: PasskeyOut
    recovery_codes: list[str] | None = Field(
        None, description="New recovery codes when this is the user's first factor"
    )


class TokenIn(BaseModel):
    """A new personal token. Needs a sign-in within 15 minutes or `confirm_password`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=64)
    scope: Literal["read", "reveal", "admin"]
    expires_in_days: int = Field(ge=1, le=365)
    allowed_networks: list[str] | None = Field(
        None, max_length=32, description="CIDRs the token may be used from; all when absent"
    )
    confirm_password: str | None = Field(None, min_length=1, max_length=MAX_PASSWORD)


class TokenCreated(BaseModel):
    """The token's value, shown this once (kept only as a hash)."""

    id: int
    token: str
    name: str
    scope: Literal["read", "reveal", "admin"]
    expires_at: Timestamp


class Token(BaseModel):
    """A token as lists show it: never its value."""

    id: int
    name: str
    owner: str
    scope: Literal["read", "reveal", "admin"]
    created_at: Timestamp
    expires_at: Timestamp
    last_used_at: Timestamp | None
    last_used_ip: str | None
    allowed_networks: list[str]
    expired: bool


class TokenList(BaseModel):
    items: list[Token]
