"""The ``dbos-sdk demo``: an application of the SDK, and the story told about it.

- :mod:`dbos_sdk_demo.app` is the app: a workflow of checkpointed steps, one of them a
  transaction through the ``dbos_sqlite_datasource`` plugin, and a scheduled workflow.
  ``python -m dbos_sdk_demo`` runs it as the demo's child process.
- :func:`run_demo` runs it twice, SIGKILLing the first process halfway, and narrates and
  checks what recovery did. ``dbos-sdk demo`` calls it.

Like a plugin, this package stands on the public API alone (``dbos_sdk`` and the plugin
packages); importing it does not import the app. Its modules import each other relatively:
the import-contract test matches ``dbos_sdk`` as a name prefix, so an absolute import of
``dbos_sdk_demo._story`` would read to it as a private ``dbos_sdk`` import.
"""

from ._story import DemoDatabase, run_demo

__all__ = ["DemoDatabase", "run_demo"]
