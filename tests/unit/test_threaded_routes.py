"""`ThreadedRoute`: a plain ``def`` endpoint still runs off the event loop, sees the request's
context, and has its parameters and its answer checked as FastAPI checks them."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel

from api.threaded_routes import ThreadedRoute

REQUEST_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("request_tag", default="")


class Answer(BaseModel):
    thread: str
    loop_thread: str
    tag: str
    n: int


async def loop_thread() -> str:
    """A dependency on the event loop: the thread the loop runs on."""
    return threading.current_thread().name


router = APIRouter(route_class=ThreadedRoute)


@router.get("/sync/{n}", response_model=Answer)
def sync_endpoint(n: int, loop: Annotated[str, Depends(loop_thread)]) -> dict[str, object]:
    return {
        "thread": threading.current_thread().name,
        "loop_thread": loop,
        "tag": REQUEST_TAG.get(),
        "n": n,
        "secret": "never shown",  # not in the response model: filtered out
    }


@router.get("/broken", response_model=Answer)
def broken_endpoint() -> dict[str, object]:
    return {"n": "not a number"}


@router.get("/async")
async def async_endpoint() -> dict[str, str]:
    return {"thread": threading.current_thread().name}


def app() -> FastAPI:
    made = FastAPI()

    Next = Callable[[Request], Awaitable[Response]]

    @made.middleware("http")
    async def tag(request: Request, call_next: Next) -> Response:
        REQUEST_TAG.set(request.headers.get("x-tag", ""))
        return await call_next(request)

    made.include_router(router)
    return made


def test_a_plain_endpoint_runs_on_a_route_thread_with_the_request_context() -> None:
    with TestClient(app()) as client:
        answered = client.get("/sync/7", headers={"x-tag": "req-1"})
    assert answered.status_code == 200, answered.text
    body = answered.json()
    assert body["thread"].startswith("peerpush-route")
    assert body["thread"] != body["loop_thread"]  # the loop was free meanwhile
    assert body["tag"] == "req-1"  # context variables cross into the thread
    assert body["n"] == 7
    assert "secret" not in body  # the response model still shapes the answer


def test_parameters_and_answers_are_still_validated() -> None:
    with TestClient(app(), raise_server_exceptions=False) as client:
        assert client.get("/sync/seven").status_code == 422
        assert client.get("/broken").status_code == 500  # an answer its model refuses


def test_an_async_endpoint_is_left_on_the_loop() -> None:
    with TestClient(app()) as client:
        thread = client.get("/async").json()["thread"]
    assert not thread.startswith("peerpush-route")


def test_the_routes_keep_the_endpoint_name_for_their_operation_ids() -> None:
    names = {route.name for route in router.routes}
    assert {"sync_endpoint", "broken_endpoint", "async_endpoint"} <= names
