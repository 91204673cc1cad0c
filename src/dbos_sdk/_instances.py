"""Configured instances: objects whose methods are workflows, recovered by name."""

from dbos_sdk._registry import REGISTRY


class DBOSConfiguredInstance:
    """Base class for objects whose workflow methods must be recoverable.

    A workflow method called on a configured instance records the instance by class and
    ``config_name`` instead of serializing it; at recovery the instance of that name
    (created again at import time, before launch) runs it. Each instance of a class needs
    its own ``config_name``.
    """

    config_name: str

    def __init__(self, config_name: str) -> None:
        self.config_name = config_name
        REGISTRY.add_instance(type(self).__qualname__, config_name, self)
