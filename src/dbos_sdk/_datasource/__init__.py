"""Internals behind :mod:`dbos_sdk.datasource` (the public plugin API for datasources)."""
