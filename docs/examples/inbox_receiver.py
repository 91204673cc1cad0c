"""Worked example for docs/receivers.md: a complete event receiver in one file.

``InboxReceiver`` watches a directory. Every file dropped there is an event: it starts the
workflow bound to the directory, once, even across crashes and restarts. It uses only the
public API, as a third-party receiver would:

- a ``ReceiverRegistry`` keeps its per-function configuration typed;
- ``DBOSLifecycleCallback`` connects it at launch (and fails launch on bad configuration)
  and stops it at shutdown;
- the workflow ID comes from the event's identity (the file name), so an event seen twice
  starts one workflow;
- the dispatch state records how far it got, advanced only after the workflow start
  returned (the start is durable then), so a restart resumes without a full rescan.

Run it: ``INBOX_DIR=/tmp/inbox python docs/examples/inbox_receiver.py`` and drop files into
the directory. ``tests/test_docs.py`` runs it as a test.
"""

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs

from dbos_sdk import (
    DBOS,
    DBOSConfig,
    DBOSExternalState,
    DBOSLifecycleCallback,
    ReceiverRegistry,
    StartWorkflowOptions,
)
from dbos_sdk.errors import DBOSRegistrationError

F = TypeVar("F", bound=Callable[..., Any])


@attrs.define
class InboxInfo:
    """Per-function configuration: the directory it serves (filled in by the decorator)."""

    directory: Path | None = None


class InboxReceiver(DBOSLifecycleCallback):
    """Starts a workflow for every file that appears in a watched directory."""

    def __init__(self, name: str, *, poll_interval: float = 0.2) -> None:
        self.name = name
        self.poll_interval = poll_interval
        self.registry: ReceiverRegistry[None, InboxInfo, None] = ReceiverRegistry(
            f"inbox:{name}", class_info=lambda: None, method_info=InboxInfo, param_info=lambda: None
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        DBOS.register_lifecycle_callback(self)

    def watch(self, directory: str | Path) -> Callable[[F], F]:
        """Decorator, above @DBOS.workflow(): run the workflow with each new file's path."""

        def deco(func: F) -> F:
            info = DBOS.associate_function_with_info(self.registry, func)
            if info.directory is not None:
                raise DBOSRegistrationError(
                    f"{func.__qualname__} already watches {info.directory}; one directory per function."
                )
            info.directory = Path(directory)
            return func

        return deco

    # --- lifecycle ---------------------------------------------------------------------

    def initialize(self) -> None:
        self._stop.clear()
        for reg in DBOS.get_associated_info(self.registry):
            directory = reg.method_config.directory
            assert directory is not None
            if reg.method_reg.kind != "workflow":
                raise ValueError(f"{reg.method_reg.name} is not a @DBOS.workflow()")
            if not directory.is_dir():  # bad configuration fails launch, naming everything
                raise ValueError(
                    f"receiver {self.name!r}, function {reg.method_reg.name}: "
                    f"directory {str(directory)!r} does not exist"
                )
            t = threading.Thread(target=self._run, args=(reg.method_reg, directory), daemon=True)
            t.start()
            self._threads.append(t)

    def destroy(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()

    def log_registered_endpoints(self) -> None:
        for reg in DBOS.get_associated_info(self.registry):
            DBOS.logger.info(
                "inbox %s: %s -> %s", self.name, reg.method_config.directory, reg.method_reg.name
            )

    # --- dispatch ------------------------------------------------------------------------

    def _run(self, method: Any, directory: Path) -> None:
        key = str(directory)
        while not self._stop.is_set():
            state = DBOS.get_event_dispatch_state(self.name, method.name, key)
            seen_up_to = state.update_time if state and state.update_time else 0.0
            # Files at or after the stored time are offered again: a start is idempotent,
            # so an event offered twice starts one workflow.
            for path in sorted(directory.iterdir(), key=lambda p: (p.stat().st_mtime, p.name)):
                mtime = path.stat().st_mtime
                if mtime < seen_up_to:
                    continue
                DBOS.start_workflow_registered(
                    method,
                    [str(path)],
                    {},
                    StartWorkflowOptions(workflow_id=f"inbox-{self.name}-{path.name}"),
                )
                # Only now, with the workflow durably started, advance the state.
                DBOS.upsert_event_dispatch_state(
                    DBOSExternalState(
                        service=self.name,
                        workflow_fn_name=method.name,
                        key=key,
                        value=path.name,
                        update_time=mtime,
                    )
                )
            self._stop.wait(self.poll_interval)


# --- a user of the receiver ---------------------------------------------------------------

inbox = InboxReceiver("uploads")
INBOX_DIR = Path(os.environ.get("INBOX_DIR", "inbox"))


@DBOS.step()
def count_words(path: str) -> int:
    return len(Path(path).read_text().split())


@inbox.watch(INBOX_DIR)
@DBOS.workflow()
def process_upload(path: str) -> int:
    words = count_words(path)
    DBOS.logger.info("%s has %d words", path, words)
    return words


if __name__ == "__main__":
    INBOX_DIR.mkdir(parents=True, exist_ok=True)
    DBOS(DBOSConfig("inbox-example"))
    DBOS.launch()
    print(f"watching {INBOX_DIR}; drop files there (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        DBOS.shutdown()
