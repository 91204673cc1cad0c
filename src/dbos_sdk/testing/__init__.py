"""Test support for applications and plugin authors.

- :func:`isolated_registry`: registrations made inside the block are forgotten afterwards,
  so tests that register workflows, queues, datasources or receivers stay independent.
"""

from dbos_sdk._registry_scope import isolated_registry

__all__ = ["isolated_registry"]
