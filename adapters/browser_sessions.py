"""Signing in from a browser to the admin pages (rules §7): a session cookie, CSRF tokens.

The JSON API takes bearer tokens only; a browser gets an ``HttpOnly``, ``SameSite=Strict``
cookie scoped to ``/admin`` (``Secure`` except in development, which is plain http). It holds
a signed session of its own type (`TokenService.issue_browser`), which the bearer check
refuses, so the cookie never stands in for an access token. Signing in goes through the very
check the JSON login uses (`Logins`: limits and password), and only admins get a session.

Every form that changes something (sign in, sign out) carries a token that is a MAC of what
the browser's cookie holds: the session, or before signing in a random nonce set with the
form. Another site can make the browser send the cookie (not with ``SameSite=Strict``) but
can never read it, so it cannot produce the token.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Literal

from adapters.jwt_tokens import AuthUser, InvalidToken, TokenService
from adapters.users import Logins

SESSION_COOKIE = "peerpush_admin"
FORM_COOKIE = "peerpush_signin"
COOKIE_PATH = "/admin"
FORM_COOKIE_SECONDS = 1800


class FormRefused(Exception):
    """A form came back without the token its cookie calls for (403): not sent from our page."""


class NotSignedIn(Exception):
    """No browser session, or an expired or ended one: the page sends to the sign-in form."""


class NotAdmin(Exception):
    """Signed in, but not an admin (403)."""


class WrongCredentials(Exception):
    """Wrong email or password (401), counted like a failed API login."""


@dataclass(frozen=True)
class Cookie:
    """A cookie to set on the response (``max_age`` 0 deletes it)."""

    name: str
    value: str
    max_age: int
    secure: bool
    path: str = COOKIE_PATH
    httponly: bool = True
    samesite: Literal["strict"] = "strict"


class BrowserSessions:
    def __init__(self, tokens: TokenService, logins: Logins, *, secure: Callable[[], bool]) -> None:
        """``secure``: whether cookies are ``Secure`` (asked per cookie: production)."""
        self.tokens, self.logins, self.secure = tokens, logins, secure

    def sign_in_form(self) -> tuple[Cookie, str]:
        """The nonce cookie to set with a new sign-in form, and the form's token."""
        nonce = secrets.token_urlsafe(32)
        cookie = Cookie(FORM_COOKIE, nonce, FORM_COOKIE_SECONDS, self.secure())
        return cookie, self.tokens.form_token(nonce)

    def sign_in(
        self, email: str, password: str, address: str, *, nonce: str | None, form_token: str
    ) -> Cookie:
        """The session cookie for an admin whose credentials these are.

        Raises `FormRefused`, `RateLimited`, `WrongCredentials` or `NotAdmin`.
        """
        if not self.tokens.form_token_ok(nonce, form_token):
            raise FormRefused("the sign-in form has expired; load it again")
        user = self.logins.authenticate(email, password, address)
        if user is None:
            raise WrongCredentials("wrong email or password")
        if not user.is_admin:
            raise NotAdmin("only an admin may use these pages")
        value, seconds = self.tokens.issue_browser(user.id, user.role)
        return Cookie(SESSION_COOKIE, value, seconds, self.secure())

    def admin(self, session: str | None) -> AuthUser:
        """The admin a session cookie names; `NotSignedIn` or `NotAdmin` otherwise (the role is
        read from the users table each time, so a demotion applies at once)."""
        if not session:
            raise NotSignedIn("sign in first")
        try:
            user = self.tokens.verify_browser(session)
        except InvalidToken as e:  # expired, ended or forged
            raise NotSignedIn(str(e)) from None
        if not user.is_admin:
            raise NotAdmin("only an admin may use these pages")
        return user

    def form_token(self, session: str) -> str:
        """The token the signed-in pages' forms carry."""
        return self.tokens.form_token(session)

    def sign_out(self, session: str | None, form_token: str) -> Cookie:
        """End the session; the cookie that deletes it. `FormRefused` without the token."""
        if not session or not self.tokens.form_token_ok(session, form_token):
            raise FormRefused("sign out from the dashboard's own button")
        with suppress(InvalidToken):  # not a session of ours: nothing to end; the cookie goes
            self.tokens.end_browser(session)
        return self.deleted(SESSION_COOKIE)

    def deleted(self, name: str) -> Cookie:
        return Cookie(name, "", 0, self.secure())
