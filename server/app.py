"""The aiohttp application: routes, auth/CORS/metrics middleware, engine and store as AppKeys."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import BodyPartReader, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ldmscan import __version__
from ldmscan.engine import Engine, EngineBusy
from ldmscan.errors import ImageError
from ldmscan.recording import Recorder
from ldmscan.results import CheckResult
from ldmscan.storage import Location, Source, Store

from .auth import token_matches
from .metrics import ServerMetrics
from .openapi import openapi_document

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC_PATHS = {"/v1/health", "/v1/openapi.json", "/metrics"}
MAX_CONTEXT_CHARS = 2048


@dataclass
class ServerSettings:
    token: str | None  # None: no auth (only allowed on a loopback bind; the CLI checks)
    cors_origins: frozenset[str] = field(default_factory=frozenset)
    max_bytes: int = 50 * 1024 * 1024
    request_timeout: float = 60.0
    retry_after: int = 2


ENGINE = web.AppKey("engine", Engine)
STORE = web.AppKey("store", Store)
SETTINGS = web.AppKey("settings", ServerSettings)
METRICS = web.AppKey("metrics", ServerMetrics)
RECORDER = web.AppKey("recorder", Recorder)


class BadRequest(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers or None
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as exc:
        return error(400, exc.code, exc.message)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_bytes
        return error(413, "too_large", f"request body is over the {limit}-byte limit")
    except web.HTTPNotFound:
        return error(404, "not_found", f"no route {request.method} {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        return error(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here",
            Allow=",".join(sorted(exc.allowed_methods)),
        )
    except web.HTTPException as exc:  # any other aiohttp status: the same JSON shape
        code = exc.reason.lower().replace(" ", "_") if exc.reason else "http_error"
        return error(exc.status, code, exc.text or exc.reason or "request failed")
    except Exception:  # a bug: logged with its traceback, answered in the JSON shape, counted
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error(500, "internal_error", "the server failed on this request; see its log")


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS only for the configured extension origins; everyone else gets no CORS headers."""
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin in request.app[SETTINGS].cors_origins
    if request.method == "OPTIONS" and allowed:
        response: web.StreamResponse = web.Response(status=204)
    else:
        response = await handler(request)
    if allowed and origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Allow-Headers"] = (
            "Authorization, Content-Type, X-Page-URL, X-Image-URL"
        )
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[SETTINGS].token
    # an unknown route is a 404 for everyone: a 401 would make a typo look like a bad token
    routed = request.match_info.http_exception is None
    protected = routed and request.path not in PUBLIC_PATHS and request.method != "OPTIONS"
    if token is not None and protected:  # noqa: SIM102 (the two conditions say different things)
        if not token_matches(request.headers.get("Authorization"), token):
            return error(
                401,
                "unauthorized",
                "missing or wrong bearer token (see `ldmscan token`)",
                **{"WWW-Authenticate": "Bearer"},
            )
    return await handler(request)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    route = request.match_info.route.resource
    endpoint = route.canonical if route is not None else "unmatched"
    started = time.perf_counter()
    response = await handler(request)
    metrics.requests.labels(endpoint, str(response.status)).inc()
    metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
    return response


async def _read_image(request: web.Request) -> tuple[bytes, dict[str, str]]:
    """Raw body or multipart `file`; page/image URLs from fields, query or headers."""
    context: dict[str, str] = {
        "page_url": request.query.get("page_url") or request.headers.get("X-Page-URL") or "",
        "image_url": request.query.get("image_url") or request.headers.get("X-Image-URL") or "",
    }
    if request.content_type.startswith("multipart/"):
        data = b""
        try:
            reader = await request.multipart()
            files = 0
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue  # a nested multipart: nothing this API reads
                if part.name == "file":
                    files += 1
                    if files > 1:
                        raise BadRequest(
                            "several_files", "send one image per request (one `file` part)"
                        )
                    data = await part.read()
                elif part.name is not None and part.name in context:
                    context[part.name] = await part.text()
        except (web.HTTPException, BadRequest, asyncio.TimeoutError):
            raise
        except Exception as exc:  # malformed multipart: aiohttp raises several kinds
            raise BadRequest("bad_multipart", f"malformed multipart body: {exc}") from exc
        return data, context
    return await request.read(), context


def verdict_json(result: CheckResult) -> dict[str, Any]:
    body = result.verdict.to_dict()
    body["image"] = {k: v for k, v in vars(result.image).items()} if result.image.sha256 else None
    return body


async def check(request: web.Request) -> web.Response:
    app = request.app
    limit = app[SETTINGS].max_bytes
    if request.content_length is not None and request.content_length > limit:
        # refused before a byte of the body is read (aiohttp would read up to the limit first)
        return error(413, "too_large", f"request body is over the {limit}-byte limit")
    try:
        # a client that trickles its body is cut off at the request deadline
        data, context = await asyncio.wait_for(_read_image(request), app[SETTINGS].request_timeout)
    except asyncio.TimeoutError:
        return error(408, "body_timeout", "the request body did not arrive in time")
    if not data:
        return error(400, "empty_body", "send the image bytes as the body or a multipart `file`")
    context = {k: v[:MAX_CONTEXT_CHARS] for k, v in context.items() if v}
    engine = app[ENGINE]
    try:
        future = engine.submit(data, block=False)
    except EngineBusy:
        return error(
            429,
            "busy",
            "the scoring queue is full; retry shortly",
            **{"Retry-After": str(app[SETTINGS].retry_after)},
        )
    try:
        result = await asyncio.wait_for(asyncio.wrap_future(future), app[SETTINGS].request_timeout)
    except asyncio.TimeoutError:
        return error(504, "timeout", f"no verdict within {app[SETTINGS].request_timeout:g}s")
    verdict = result.verdict
    if verdict.sha256:
        # The URL is context only: it is stored, never fetched.
        uri = context.get("image_url") or f"api:{verdict.sha256}"
        location = Location(uri=uri, source=Source.API, context=context or None)
        await asyncio.get_running_loop().run_in_executor(
            None, app[RECORDER].save, [(result, location)]
        )
    app[METRICS].verdicts.labels(verdict.label.value, "api").inc()
    if verdict.is_error:
        reason = verdict.error or "cannot score"
        code = verdict.error_code or ImageError.NOT_AN_IMAGE
        return web.json_response(
            {"error": {"code": code, "message": reason}, "verdict": verdict_json(result)},
            status=422,
        )
    return web.json_response(verdict_json(result))


async def get_verdicts(request: web.Request) -> web.Response:
    sha = request.match_info["sha256"].lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        return error(400, "bad_sha256", "expected 64 hexadecimal characters")
    store = request.app[STORE]
    loop = asyncio.get_running_loop()
    image = await loop.run_in_executor(None, store.image, sha)
    if image is None:
        return error(404, "unknown_image", f"no image with sha256 {sha}")
    rows = await loop.run_in_executor(None, store.verdicts_for, sha)
    locations = await loop.run_in_executor(None, store.locations_for, sha)
    return web.json_response(
        {
            "sha256": sha,
            "image": _jsonable(image, drop=frozenset({"id"})),
            "verdicts": [_jsonable(r, drop=frozenset({"id", "image_id"})) for r in rows],
            # raw_uri: the exact bytes of an undecodable name, for the OS; `uri` is its text form
            "locations": [
                _jsonable(r, drop=frozenset({"id", "image_id", "raw_uri"})) for r in locations
            ],
        }
    )


def _jsonable(row: dict[str, Any], drop: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {
        k: (v.isoformat() if hasattr(v, "isoformat") else v)
        for k, v in row.items()
        if k not in drop
    }


async def health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "device": engine.device,
            "detector": {
                "name": engine.card.name,
                "version": engine.card.version,
                "sha256": engine.detector.sha256,
            },
            "tries": engine.tries,
            "queue_depth": engine.queue_depth,
            "pending": engine.pending,
        }
    )


async def metrics_endpoint(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    metrics.queue_depth.set(request.app[ENGINE].queue_depth)
    metrics.pending.set(request.app[ENGINE].pending)
    return web.Response(
        body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


class Service(Protocol):
    """Something that runs beside the server on its own thread and shares its engine, such as
    the folder watcher of `ldmscan serve --watch` (the CLI builds it; the server never imports
    the scanner package)."""

    def run(self) -> None: ...

    def stop(self) -> None: ...


def make_app(
    engine: Engine, store: Store, settings: ServerSettings, services: Sequence[Service] = ()
) -> web.Application:
    """The application over an already-built engine and store (the CLI or a test owns them)."""
    app = web.Application(
        client_max_size=settings.max_bytes,
        middlewares=[metrics_middleware, errors_middleware, cors_middleware, auth_middleware],
    )
    app[ENGINE] = engine
    app[STORE] = store
    app[SETTINGS] = settings
    app[METRICS] = metrics = ServerMetrics()
    app[RECORDER] = Recorder(engine, store, source=Source.API)
    engine.batch_listeners.append(metrics.batch_size.observe)
    app.router.add_post("/v1/check", check)
    app.router.add_get("/v1/verdicts/{sha256}", get_verdicts)
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_get("/metrics", metrics_endpoint)

    async def detach(app: web.Application) -> None:
        if metrics.batch_size.observe in engine.batch_listeners:
            engine.batch_listeners.remove(metrics.batch_size.observe)

    app.on_cleanup.append(detach)

    async def run_services(app: web.Application) -> AsyncIterator[None]:
        threads = [
            threading.Thread(
                target=service.run, name=f"ldmscan-{type(service).__name__}", daemon=True
            )
            for service in services
        ]
        for thread in threads:
            thread.start()
        yield
        for service in services:
            service.stop()
        for thread in threads:  # let each finish its in-flight work
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 60)

    app.cleanup_ctx.append(run_services)
    return app
