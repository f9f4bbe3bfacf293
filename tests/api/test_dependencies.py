"""Every route and dependency of the API runs on the event loop, none in FastAPI's thread pool.

FastAPI runs a plain `def` in its thread pool, a hop per call that each request would pay for
work that never blocks; this keeps a new dependency from bringing that cost back unnoticed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant
from fastapi.routing import APIRoute

from agent_growth.api import deps
from agent_growth.api.routes import agents, coverage, health, metrics, tasks


def calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from calls(sub)


def runs_on_the_loop(call: Callable[..., Any]) -> bool:
    # Security schemes such as APIKeyHeader are instances with an async __call__.
    target = call if inspect.isroutine(call) else type(call).__call__
    target = inspect.unwrap(target)
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def test_no_route_or_dependency_runs_in_the_thread_pool() -> None:
    routes = [
        route
        for module in (agents, coverage, health, metrics, tasks)
        for route in module.router.routes
        if isinstance(route, APIRoute)
    ]
    # The key check is added to whole routers by the app, so it is not among their routes.
    dependants = [route.dependant for route in routes]
    dependants.append(get_dependant(path="", call=deps.require_api_key))

    in_thread_pool = {
        getattr(call, "__qualname__", repr(call))
        for dependant in dependants
        for call in calls(dependant)
        if not runs_on_the_loop(call)
    }

    assert len(routes) > 10
    assert in_thread_pool == set()
