"""Accounts and sessions: register, log in, refresh, log out, who am I, erase me (rules §7).

Register, login and refresh are rate-limited per client address, and failed logins also per
email (per address and overall); every refusal of credentials says the same thing whether the
email is unknown or the password wrong.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints

from api.deps import (
    UNAUTHORIZED,
    CurrentUser,
    DuplicateUser,
    InvalidToken,
    ServicesDep,
    client_address,
    normalise_email,
)
from api.errors import ApiError
from api.schemas import Body, View
from api.threaded_routes import ThreadedRoute
from application.erasure import erase_user
from domain.aggregate import Cause

router = APIRouter(prefix="/auth", tags=["auth"], route_class=ThreadedRoute)

# Confirming a password to erase an account is a login attempt: counted per account (5 in 10
# minutes), so a stolen access token cannot be used to guess the password at speed.
ERASE_BUCKET = "erase"
ERASE_LIMIT = (5, 600)


def _normalised(value: object) -> object:
    """NFKC and trimmed before the checks below; control or bidi characters → 422."""
    return normalise_email(value) if isinstance(value, str) else value


Email = Annotated[
    str,
    BeforeValidator(_normalised),
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    ),
    Field(examples=["ann@example.com"]),
]
Password = Annotated[str, Field(min_length=8, max_length=128, examples=["correct horse"])]
Username = Annotated[
    str, Field(min_length=3, max_length=20, pattern=r"^[a-z0-9_]+$", examples=["ann"])
]
RefreshToken = Annotated[str, Field(min_length=1, max_length=4096)]


class RegisterIn(Body):
    model_config = ConfigDict(extra="forbid")
    email: Email
    username: Username
    password: Password


class LoginIn(Body):
    model_config = ConfigDict(extra="forbid")
    email: Annotated[
        str,
        BeforeValidator(_normalised),
        Field(min_length=1, max_length=254, examples=["ann@example.com"]),
    ]
    password: Annotated[str, Field(min_length=1, max_length=128, examples=["correct horse"])]


class RefreshIn(Body):
    model_config = ConfigDict(extra="forbid")
    refresh_token: RefreshToken


class EraseMeIn(Body):
    model_config = ConfigDict(extra="forbid")
    password: Annotated[
        str,
        Field(
            min_length=1,
            max_length=128,
            description="the current password, to confirm",
            examples=["correct horse"],
        ),
    ]


class UserOut(View):
    """An account as its owner sees it (an erased account has none)."""

    id: UUID
    email: str
    username: str
    role: Literal["user", "admin"]
    created_at: datetime


class TokensOut(View):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")


@router.post(
    "/register",
    status_code=201,
    response_model=UserOut,
    responses={409: {"description": "email or username taken"}, 429: {}},
)
def register(body: RegisterIn, request: Request, services: ServicesDep) -> UserOut:
    services.limits.check("register", client_address(request))
    try:
        user = services.users.register(body.email, body.username, body.password)
    except DuplicateUser as e:
        raise ApiError(409, "user_exists", str(e), field=e.field) from None
    return UserOut.model_validate(user)


@router.post("/login", response_model=TokensOut, responses={401: {}, 429: {}})
def login(body: LoginIn, request: Request, services: ServicesDep) -> TokensOut:
    user = services.logins.authenticate(body.email, body.password, client_address(request))
    if user is None:
        raise ApiError(401, "invalid_credentials", "wrong email or password", headers=UNAUTHORIZED)
    return TokensOut.model_validate(services.tokens.issue(user.id, user.role))


@router.post("/refresh", response_model=TokensOut, responses={401: {}, 429: {}})
def refresh(body: RefreshIn, request: Request, services: ServicesDep) -> TokensOut:
    """A new token pair; the refresh token is used up. Reusing one ends its whole session."""
    services.limits.check("refresh", client_address(request))
    try:
        return TokensOut.model_validate(services.tokens.refresh(body.refresh_token))
    except InvalidToken as e:
        raise ApiError(401, "invalid_token", str(e), headers=UNAUTHORIZED) from None


@router.post("/logout", status_code=204, response_class=Response, responses={401: {}})
def logout(body: RefreshIn, services: ServicesDep) -> Response:
    """End the session the refresh token belongs to, and its access tokens with it."""
    try:
        services.tokens.revoke(body.refresh_token)
    except InvalidToken as e:
        raise ApiError(401, "invalid_token", str(e), headers=UNAUTHORIZED) from None
    return Response(status_code=204)


@router.get("/me", response_model=UserOut, responses={401: {}})
def me(user: CurrentUser, services: ServicesDep) -> UserOut:
    record = services.users.get(user.id)
    if record is None or record.erased:
        raise ApiError(401, "invalid_token", "the account no longer exists", headers=UNAUTHORIZED)
    return UserOut.model_validate(record)


@router.delete(
    "/me",
    status_code=204,
    response_class=Response,
    responses={
        401: {},
        403: {"description": "wrong password"},
        409: {"description": "the wallet still holds tokens or holds (`wallet_not_empty`)"},
        429: {},
    },
)
def erase_me(body: EraseMeIn, user: CurrentUser, services: ServicesDep) -> Response:
    """Erase your personal data (email, username, password) and end every session.

    Refused (409 ``wallet_not_empty``, with what remains) while your wallet holds tokens,
    stakes, penalties or a withdrawal in flight. The ledger keeps its events, which name
    only your id.
    """
    services.limits.check(ERASE_BUCKET, str(user.id), *ERASE_LIMIT)
    record = services.users.get(user.id)
    if record is None or record.erased or record.email is None:
        raise ApiError(401, "invalid_token", "the account no longer exists", headers=UNAUTHORIZED)
    confirmed = services.users.authenticate(record.email, body.password)
    if confirmed is None or confirmed.id != user.id:
        raise ApiError(403, "wrong_password", "the password is not this account's")
    erase_user(services.ledger, services.users, user.id, services.checkouts, Cause.user(user.id))
    return Response(status_code=204)
