"""Scoping the process-wide registry, for tests."""

from collections.abc import Generator, MutableMapping
from contextlib import contextmanager
from typing import Any

from dbos_sdk._registry import REGISTRY
from dbos_sdk._runtime import current_runtime


def _restore(current: MutableMapping[Any, Any], saved: dict[Any, Any]) -> None:
    current.clear()
    current.update(saved)


@contextmanager
def isolated_registry() -> Generator[None, None, None]:
    """Forget, when the block ends, everything registered inside it.

    Workflows, steps, queues, configured instances, datasources, receivers and
    associations registered inside the block are removed afterwards; what was registered
    before (at import time, typically) stays. A runtime still launched at the end of the
    block is shut down first, while its receivers and datasources are still registered.
    Use it to keep tests that register plugins from leaking into each other.
    """
    r = REGISTRY
    functions, instances, queues = dict(r.functions), dict(r.instances), dict(r.queues)
    associations, datasources, receivers = (
        dict(r.associations),
        list(r.datasources),
        list(r.receivers),
    )
    try:
        yield
    finally:
        rt = current_runtime()
        if rt is not None and rt.launched:
            rt.shutdown(workflow_timeout_s=2)
        with r.lock:
            _restore(r.functions, functions)
            _restore(r.instances, instances)
            _restore(r.queues, queues)
            _restore(r.associations, associations)
            r.datasources[:] = datasources
            r.receivers[:] = receivers
