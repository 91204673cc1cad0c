"""An event loop on a thread of its own, for async datasources' pools and lifecycle.

An async datasource serves coroutines on several event loops (the application's, the
runtime's); its pool must live on one loop that outlives them all, and its ``initialize``
and ``destroy`` run from synchronous code (``destroy`` after the runtime's loop closed).
"""

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """A daemon thread running an event loop: :meth:`run` a coroutine on it from
    synchronous code, or :meth:`call` it from a coroutine on another loop."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (not from the loop itself)."""
        loop = self._running_loop()
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` run on the loop, from a coroutine on another loop."""
        loop = self._running_loop()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def stop(self) -> None:
        """Stop the loop and its thread (a later :meth:`run` starts a new one)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not loop.is_running():
            loop.close()
