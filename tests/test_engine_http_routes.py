"""Tests for iii_sync.engine._http_routes: route keys, the table and matching."""

from typing import Any, Optional

import pytest

from iii_sync.engine._http_routes import Route, RouteTable, route_key
from iii_sync.engine._providers import Binding, TriggerRejected


def route(
    binding_id: str, api_path: Any, method: Optional[str] = None, **config: Any
) -> Route:
    config["api_path"] = api_path
    if method is not None:
        config["http_method"] = method
    return Route(Binding(binding_id, "http", "fn-" + binding_id, config))


def table(*routes: Route) -> RouteTable:
    live = RouteTable()
    for each in routes:
        live.add(each)
    return live


@pytest.mark.timeout(10)
def test_route_keys() -> None:
    assert route_key("get", "/users/:id") == "GET:users/:id"
    assert route_key("GET", "users/:id") == "GET:users/:id"
    assert route_key("post", "/") == "POST:/"
    assert route_key("GET", "") == "GET:"


@pytest.mark.timeout(10)
def test_a_route_reads_its_binding_config() -> None:
    plain = route("t", "users/:id", condition_function_id="cond")
    assert (plain.method, plain.key, plain.condition) == (
        "GET",
        "GET:users/:id",
        "cond",
    )
    assert plain.pattern == ("", "users", ":id")
    assert route("t", "/x", "patch").method == "PATCH"
    assert route("t", "/x", condition_function_id=5).condition is None
    with pytest.raises(TriggerRejected):
        route("t", 7)


@pytest.mark.timeout(10)
def test_path_params_are_the_raw_segments() -> None:
    orders = route("t", "shops/:shop/orders/:order")
    assert orders.path_params("/shops/s%201/orders/9") == {
        "shop": "s%201",
        "order": "9",
    }
    assert orders.path_params("/shops/s") == {}


@pytest.mark.timeout(10)
def test_same_shape_with_other_names_clashes_but_the_same_key_replaces() -> None:
    live = table(route("t1", "/users/:id"))
    with pytest.raises(TriggerRejected):
        live.add(route("t2", "users/:name"))
    live.add(route("t3", "/users/:name", "POST"))
    live.add(route("t4", "users/:id"))
    found, _ = live.lookup("GET", "/users/7")
    assert found is not None and found.binding.id == "t4"


@pytest.mark.timeout(10)
def test_only_the_owning_binding_removes_a_route() -> None:
    live = table(route("old", "/thing"), route("new", "thing"))
    assert not live.remove("GET:thing", "old")
    assert live.remove("GET:thing", "new")
    assert not live.remove("GET:thing", "new")
    assert live.lookup("GET", "/thing") == (None, "")


@pytest.mark.timeout(10)
def test_lookup_by_path_then_method() -> None:
    live = table(
        route("get", "/m"),
        route("post", "/m", "POST"),
        route("by-id", "/users/:id", "POST"),
        route("me", "/users/me"),
        route("odd", "/odd", "PURGE"),
    )
    found, _ = live.lookup("POST", "/m")
    assert found is not None and found.binding.id == "post"

    # Another method on a known path lists what is allowed; HEAD rides on GET.
    assert live.lookup("PATCH", "/m") == (None, "GET,HEAD,POST")
    assert live.lookup("HEAD", "/m") == (None, "")

    # The literal segment wins the path, even without the method.
    assert live.lookup("POST", "/users/me") == (None, "GET,HEAD")
    found, _ = live.lookup("POST", "/users/7")
    assert found is not None and found.binding.id == "by-id"

    # Unmounted methods are stored but never matched; empty segments never fit.
    assert live.lookup("PURGE", "/odd") == (None, "")
    assert live.lookup("POST", "/users/") == (None, "")
