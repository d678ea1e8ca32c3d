"""Routes of the ``http`` trigger provider: the route table and path matching.

A route comes from a binding's config: ``api_path`` (required; ``:name``
segments are path parameters, the leading ``/`` is optional), ``http_method``
(default ``GET``, upper-cased) and ``condition_function_id``. The route key is
``METHOD:path-without-leading-slash``; the same key again replaces the route,
and the same shape with other parameter names is refused. Matching prefers
literal segments to parameters, compares the raw (still percent-encoded) path,
reports the methods allowed where the path exists for other methods (the
provider answers 405), and lets a ``HEAD`` request reach a ``GET`` route, where
it finds no ``HEAD`` binding and gets the 404 envelope.
"""

import threading
from typing import Dict, List, Optional, Tuple

from ._providers import Binding, TriggerRejected

# Methods the engine mounts, in the order an Allow header lists them.
MOUNTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


def route_key(method: str, api_path: str) -> str:
    """The engine's route key, ``METHOD:path`` without the leading slashes."""
    path = api_path if api_path == "/" else api_path.lstrip("/")
    return "%s:%s" % (method.upper(), path)


def _is_param(segment: str) -> bool:
    return segment.startswith(":") or (
        segment.startswith("{") and segment.endswith("}")
    )


class Route:
    """One binding's route: its key, mount pattern and structural shape.

    Raises:
        TriggerRejected: the binding's config has no string ``api_path``.
    """

    __slots__ = (
        "api_path",
        "binding",
        "condition",
        "key",
        "method",
        "pattern",
        "shape",
    )

    def __init__(self, binding: Binding) -> None:
        config = binding.config if isinstance(binding.config, dict) else {}
        api_path = config.get("api_path")
        if not isinstance(api_path, str):
            raise TriggerRejected("api_path is required for http triggers")
        method = config.get("http_method")
        condition = config.get("condition_function_id")

        self.binding = binding
        self.api_path = api_path
        self.method = (method if isinstance(method, str) else "GET").upper()
        self.condition = condition if isinstance(condition, str) else None
        self.key = route_key(self.method, api_path)
        mounted = api_path if api_path.startswith("/") else "/" + api_path
        self.pattern = tuple(mounted.split("/"))
        shape = ("{}" if _is_param(s) else s for s in self.pattern)
        self.shape = "%s:%s" % (self.method, "/".join(shape))

    def score(self, segments: List[str]) -> Optional[Tuple[int, ...]]:
        """How well a request path fits: literal matches rank above parameters."""
        if len(segments) != len(self.pattern):
            return None
        marks = []
        for wanted, given in zip(self.pattern, segments):
            if _is_param(wanted) and given:
                marks.append(0)
            elif wanted == given and not _is_param(wanted):
                marks.append(1)
            else:
                return None
        return tuple(marks)

    def path_params(self, path: str) -> Dict[str, str]:
        """``:name`` values from the raw request path, as the engine reads them."""
        wanted = [s for s in self.api_path.split("/") if s]
        given = [s for s in path.split("/") if s]
        if len(wanted) != len(given):
            return {}
        return {w[1:]: g for w, g in zip(wanted, given) if w.startswith(":")}


class RouteTable:
    """The live routes, keyed by route key; every method is thread-safe."""

    def __init__(self) -> None:
        # Guards _routes.
        self._routes_lock = threading.Lock()
        self._routes: Dict[str, Route] = {}

    def add(self, route: Route) -> None:
        """Adds the route, replacing one with the same key; does not block.

        Raises:
            TriggerRejected: a route of the same shape with other parameter
                names exists.
        """
        with self._routes_lock:
            clash = [
                other
                for key, other in self._routes.items()
                if key != route.key and other.shape == route.shape
            ]
            if not clash:
                self._routes[route.key] = route
                return
        raise TriggerRejected(
            "Route '%s %s' conflicts with already-registered route '%s %s': routes"
            " with identical structure but different path-parameter names are not"
            " supported"
            % (route.method, route.api_path, route.method, clash[0].api_path)
        )

    def remove(self, key: str, binding_id: str) -> bool:
        """Removes the route if this binding still owns it."""
        with self._routes_lock:
            route = self._routes.get(key)
            if route is None or route.binding.id != binding_id:
                return False
            del self._routes[key]
            return True

    def lookup(self, method: str, path: str) -> Tuple[Optional[Route], str]:
        """The route for a request, or None and the Allow value (empty for 404)."""
        with self._routes_lock:
            mounted = [r for r in self._routes.values() if r.method in MOUNTED_METHODS]
        segments = path.split("/")
        scored = [(r.score(segments), r) for r in mounted]
        fitting = [(score, r) for score, r in scored if score is not None]
        if not fitting:
            return None, ""

        # Like axum: pick the best path first, then look at the methods there.
        best = max(fitting, key=lambda pair: pair[0])[1].pattern
        methods = {r.method: r for r in mounted if r.pattern == best}
        if method in methods:
            return methods[method], ""
        if method == "HEAD" and "GET" in methods:
            return None, ""
        if "GET" in methods:
            methods["HEAD"] = methods["GET"]
        return None, ",".join(m for m in MOUNTED_METHODS if m in methods)
