"""The admin pages for browsers: sign in and out, the analysts' dashboard and its CSVs.

Server-rendered HTML (``projections.pages``) over the read models (``projections.dashboard``);
no JavaScript. A browser session cookie (``adapters.browser_sessions``, through ``api.deps``)
opens these pages only; the JSON API never reads it. Not part of the OpenAPI document.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api.deps import (
    FORM_COOKIE,
    SESSION_COOKIE,
    Cookie,
    FormRefused,
    NotAdmin,
    NotSignedIn,
    RateLimited,
    ServicesDep,
    WrongCredentials,
    client_address,
)
from api.threaded_routes import ThreadedRoute
from projections import dashboard, pages

router = APIRouter(prefix="/admin", include_in_schema=False, route_class=ThreadedRoute)

NO_STORE = {"Cache-Control": "no-store"}


def html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status, headers=NO_STORE)


def with_cookies(response: Response, *cookies: Cookie) -> Response:
    for c in cookies:
        response.set_cookie(
            c.name,
            c.value,
            max_age=c.max_age,
            path=c.path,
            secure=c.secure,
            httponly=c.httponly,
            samesite=c.samesite,
        )
    return response


def opened(
    request: Request, services: ServicesDep, since: date | None, until: date | None
) -> Response | tuple[str, dashboard.DateRange]:
    """The admin's session cookie and the days asked for, or the answer for a browser
    without a session (to the sign-in form), a non-admin (403) or a bad range (422)."""
    session = request.cookies.get(SESSION_COOKIE, "")
    try:
        services.browser.admin(session)
        return session, dashboard.DateRange.of(since, until, datetime.now(UTC).date())
    except NotSignedIn:
        return RedirectResponse("/admin/login", 303, headers=NO_STORE)
    except NotAdmin as e:
        return html(pages.message_page("Forbidden", str(e)), 403)
    except ValueError as e:
        return html(pages.message_page("Bad range", str(e)), 422)


def sign_in_page(services: ServicesDep, status: int = 200, **shown: str) -> Response:
    cookie, token = services.browser.sign_in_form()
    return with_cookies(html(pages.login_page(csrf_token=token, **shown), status), cookie)


@router.get("/login")
def login_form(services: ServicesDep) -> Response:
    return sign_in_page(services)


@router.post("/login")
def login(
    request: Request,
    services: ServicesDep,
    email: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=128)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    try:
        cookie = services.browser.sign_in(
            email,
            password,
            client_address(request),
            nonce=request.cookies.get(FORM_COOKIE),
            form_token=csrf_token,
        )
    except FormRefused as e:
        return sign_in_page(services, 403, error=str(e), email=email)
    except WrongCredentials as e:
        return sign_in_page(services, 401, error=str(e), email=email)
    except RateLimited as e:
        page = sign_in_page(services, 429, error=str(e), email=email)
        page.headers["Retry-After"] = str(e.retry_after)
        return page
    except NotAdmin as e:
        return html(pages.message_page("Forbidden", str(e)), 403)
    done = RedirectResponse("/admin/dashboard", 303, headers=NO_STORE)
    return with_cookies(done, cookie, services.browser.deleted(FORM_COOKIE))


@router.post("/logout")
def logout(
    request: Request,
    services: ServicesDep,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    try:
        gone = services.browser.sign_out(request.cookies.get(SESSION_COOKIE), csrf_token)
    except FormRefused as e:
        return html(pages.message_page("Forbidden", str(e)), 403)
    return with_cookies(RedirectResponse("/admin/login", 303, headers=NO_STORE), gone)


Since = Annotated[date | None, Query(alias="from")]


@router.get("/dashboard")
def dashboard_page(
    request: Request, services: ServicesDep, since: Since = None, to: date | None = None
) -> Response:
    gate = opened(request, services, since, to)
    if isinstance(gate, Response):
        return gate
    session, days = gate
    d = dashboard.dashboard(services.reads, days)
    return html(pages.dashboard_page(d, csrf_token=services.browser.form_token(session)))


@router.get("/dashboard/{key}.csv")
def chart_csv(
    key: str, request: Request, services: ServicesDep, since: Since = None, to: date | None = None
) -> Response:
    gate = opened(request, services, since, to)
    if isinstance(gate, Response):
        return gate
    _, days = gate
    try:
        text = dashboard.csv_of(services.reads, key, days)
    except KeyError:
        return html(pages.message_page("Not found", f"no chart {key!r}"), 404)
    name = f"peerpush-{key}-{days.since}-{days.until}.csv"
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'},
    )
