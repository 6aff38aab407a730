"""FastAPI dependencies as ``Annotated`` aliases: the services, the caller, the caller's role."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from adapters.browser_sessions import (
    FORM_COOKIE,
    SESSION_COOKIE,
    Cookie,
    FormRefused,
    NotAdmin,
    NotSignedIn,
    WrongCredentials,
)
from adapters.client_address import client_address as address_of
from adapters.metrics import PAYOUTS_PAUSED, PROJECTION_LAG, exposed_registry
from adapters.persistence import holds_nul
from adapters.settings import parse_trusted_proxies
from adapters.simulated_stripe import CONNECT_PAGE_PATH as SIMULATED_CONNECT_PATH
from adapters.simulated_stripe import PAGE_PATH as SIMULATED_CHECKOUT_PATH
from adapters.simulated_stripe import SimulatedStripe
from adapters.users import (
    AuthUser,
    DuplicateUser,
    InvalidToken,
    RateLimited,
    TokenPair,
    UserRecord,
    email_key,
    normalise_email,
)
from api.bootstrap import Services
from api.errors import ApiError, route_inputs
from application.ledger import Ledger
from application.submissions import Submissions
from domain.aggregate import Cause

# What routers need of the adapters, named here so no router imports an adapter
# (tests/unit/test_layers.py): the caller, the account records and their errors, and the
# embedded default's simulated Stripe, whose checkout pages the API serves; the admin pages'
# browser sessions; the metrics the operations routes expose.
__all__ = [
    "FORM_COOKIE",
    "PAYOUTS_PAUSED",
    "PROJECTION_LAG",
    "SESSION_COOKIE",
    "SIMULATED_CHECKOUT_PATH",
    "SIMULATED_CONNECT_PATH",
    "AuthUser",
    "Cookie",
    "DuplicateUser",
    "FormRefused",
    "InvalidToken",
    "NotAdmin",
    "NotSignedIn",
    "RateLimited",
    "SimulatedStripe",
    "TokenPair",
    "UserRecord",
    "WrongCredentials",
    "email_key",
    "exposed_registry",
    "normalise_email",
]

bearer = HTTPBearer(auto_error=False, description="an access token from POST /v1/auth/login")


async def plain_url(request: Request) -> None:
    """Refuse NUL in the path and query parameters a route reads (422).

    No id, cursor or filter contains one, and PostgreSQL text cannot hold one: without this,
    such a value would reach a query and fail there (500). Request bodies are checked by
    ``api.schemas.Body``. Async and with a fast path (no NUL anywhere in the URL, the usual
    case): it runs on every request, and a plain ``def`` dependency costs a trip to the
    threadpool.
    """
    if "\x00" not in request.scope["path"] and b"%00" not in request.scope["query_string"]:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    _, params = route_inputs(dependant)
    read = {p.alias for p in params}
    values = [
        *request.path_params.values(),
        *(v for k, v in request.query_params.multi_items() if k in read),
    ]
    if holds_nul([str(v) for v in values]):
        raise ApiError(422, "invalid_request", "the URL holds a NUL character")


def client_address(request: Request) -> str:
    """The caller's address: the peer, or behind ``TRUSTED_PROXIES`` the forwarded client."""
    trusted = parse_trusted_proxies(",".join(request.app.state.services.config.trusted_proxies))
    forwarded_for = ",".join(request.headers.getlist("x-forwarded-for"))
    peer = request.client.host if request.client else None
    return address_of(peer, forwarded_for, trusted)


# The dependencies below only pick an object from the app: async, so they run on the event
# loop instead of costing each request a trip to the threadpool.


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_ledger(services: ServicesDep) -> Ledger:
    return services.ledger


LedgerDep = Annotated[Ledger, Depends(get_ledger)]

UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


async def current_user(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> AuthUser:
    """The caller, by access token; its id (never its email) goes in the request's log line.
    A session checked moments ago is trusted on the event loop; otherwise the check (a query)
    runs in the threadpool."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(
            401, "unauthorized", "a bearer access token is required", headers=UNAUTHORIZED
        )
    token = credentials.credentials
    try:
        trusted = services.tokens.trusted_access(token)
        user = (
            trusted
            if trusted is not None
            else await run_in_threadpool(services.tokens.verify_access, token)
        )
    except InvalidToken as e:
        raise ApiError(401, "invalid_token", str(e), headers=UNAUTHORIZED) from None
    request.state.user_id = str(user.id)
    return user


CurrentUser = Annotated[AuthUser, Depends(current_user)]


async def admin_user(user: CurrentUser) -> AuthUser:
    if not user.is_admin:
        raise ApiError(403, "admin_only", "only an admin may do this")
    return user


AdminUser = Annotated[AuthUser, Depends(admin_user)]


def wait_for_position(services: Services, min_position: int | None) -> None:
    """Read your writes (``ReadModels.wait_for``): 503 ``read_model_behind`` past the bound."""
    services.reads.wait_for(services.projector, min_position, services.config.read_wait_seconds)


def request_id(request: Request) -> str:
    """The request's id (``X-Request-Id``, see ``api.app``), recorded in the events' cause."""
    return str(getattr(request.state, "request_id", "") or "")


async def get_submissions(services: ServicesDep) -> Submissions:
    return services.submissions


SubmissionsDep = Annotated[Submissions, Depends(get_submissions)]


def cause_of(user: AuthUser, request: Request, *, as_admin: bool = False) -> Cause:
    """Who acted (the user, or an admin intervening) and the request that caused it."""
    rid = request_id(request)
    return Cause.admin(user.id, rid) if as_admin else Cause.user(user.id, rid)
