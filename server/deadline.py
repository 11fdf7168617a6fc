"""A deadline on request headers, which aiohttp's server does not have: a client that opens a
connection and trickles its headers (slow-loris) holds it until the headers end. Each new
connection's protocol is wrapped; if the end of the first request's headers (a blank line)
has not arrived `seconds` after the connection opened, it is answered 408 and closed. Later
requests on a kept-alive connection are bounded by aiohttp's keep-alive timeout, and bodies by
the request deadline in `app.check`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

_BODY = json.dumps(
    {"error": {"code": "header_timeout", "message": "the request headers did not arrive in time"}}
).encode()
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
    + f"Content-Length: {len(_BODY)}\r\n\r\n".encode()
    + _BODY
)


class HeaderDeadline(asyncio.Protocol):
    """Forwards everything to aiohttp's protocol; closes the connection at the deadline."""

    def __init__(self, inner: Any, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds
        self.tail = b""
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.timer = asyncio.get_running_loop().call_later(self.seconds, self._expire)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.timer is not None:
            self.tail = (self.tail + data)[-4096:]
            if b"\r\n\r\n" in self.tail or b"\n\n" in self.tail:
                self.timer.cancel()
                self.timer = None
                self.tail = b""
        self.inner.data_received(data)

    def _expire(self) -> None:
        self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(TIMEOUT_RESPONSE)
            self.transport.close()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class DeadlineRunner(web.AppRunner):
    """An AppRunner whose sites wrap each connection's protocol in a HeaderDeadline (sites ask
    the runner for its `server`, the protocol factory they hand to asyncio)."""

    def __init__(self, app: web.Application, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout = header_timeout

    @property
    def server(self) -> Any:
        inner = super().server
        if inner is None:
            return None
        factory: Callable[[], Any] = inner

        def wrapped() -> HeaderDeadline:
            return HeaderDeadline(factory(), self.header_timeout)

        return wrapped


def run(app: web.Application, host: str, port: int, header_timeout: float) -> None:
    """web.run_app's job (serve until SIGINT/SIGTERM, then shut down cleanly) with the header
    deadline. Raises OSError when the address cannot be bound."""

    async def serve() -> None:
        runner = DeadlineRunner(app, header_timeout, access_log=None, handle_signals=True)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            while True:
                await asyncio.sleep(3600)
        finally:
            await runner.cleanup()

    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):  # the signals' way out
        asyncio.run(serve())
