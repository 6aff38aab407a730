"""Every router module under ``api/routers/`` is part of the app: each contributes its
routes to the OpenAPI document (a router renamed or dropped from ``api.app.routers`` fails
here instead of silently vanishing from the API)."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

import api.routers

MODULES = sorted(m.name for m in pkgutil.iter_modules(api.routers.__path__))


def test_every_router_module_contributes_its_routes_to_the_openapi_document(
    api_client: TestClient,
) -> None:
    document = api_client.get("/openapi.json").json()
    documented = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    assert len(MODULES) >= 8
    for name in MODULES:
        router = importlib.import_module(f"api.routers.{name}").router
        assert isinstance(router, APIRouter)
        routes = {
            (method, "/v1" + route.path)
            for route in router.routes
            if isinstance(route, APIRoute) and route.include_in_schema
            for method in route.methods or ()
        }
        assert routes, f"api/routers/{name}.py has no documented route"
        assert routes <= documented, (name, sorted(routes - documented))
