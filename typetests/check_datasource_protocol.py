"""Typetests: what is (and is not) a DataSourceTransactionHandler, written from scratch.

A handler missing ``destroy``, or whose ``invoke_transaction_function`` has the wrong
signature, is not assignable to the Protocol; a complete one is, covariantly in its client.
"""

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from dbos_sdk.datasource import (
    AsyncDataSourceTransactionHandler,
    DataSourceTransactionHandler,
    register_data_source,
)

P = ParamSpec("P")
R = TypeVar("R")


class Client: ...


class SubClient(Client): ...


class Complete:
    name: str = "complete"
    ds_type: str = "toy"

    def initialize(self) -> None: ...

    def destroy(self) -> None: ...

    @property
    def client(self) -> SubClient:
        return SubClient()

    def invoke_transaction_function(
        self, config: object | None, func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        return func(*args, **kwargs)


class MissingDestroy:
    name: str = "no-destroy"
    ds_type: str = "toy"

    def initialize(self) -> None: ...

    @property
    def client(self) -> Client:
        return Client()

    def invoke_transaction_function(
        self, config: object | None, func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        return func(*args, **kwargs)


class WrongInvoke:
    name: str = "wrong-invoke"
    ds_type: str = "toy"

    def initialize(self) -> None: ...

    def destroy(self) -> None: ...

    @property
    def client(self) -> Client:
        return Client()

    def invoke_transaction_function(self, config: object | None, func: Callable[[], R]) -> R:
        return func()


class InvokeReturnsWrongType:
    name: str = "wrong-return"
    ds_type: str = "toy"

    def initialize(self) -> None: ...

    def destroy(self) -> None: ...

    @property
    def client(self) -> Client:
        return Client()

    def invoke_transaction_function(
        self, config: object | None, func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> None:
        func(*args, **kwargs)


class AsyncComplete:
    name: str = "async"
    ds_type: str = "toy"

    def initialize(self) -> None: ...

    def destroy(self) -> None: ...

    @property
    def client(self) -> Client:
        return Client()

    async def invoke_transaction_function(
        self,
        config: object | None,
        func: Callable[P, Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        return await func(*args, **kwargs)


ok: DataSourceTransactionHandler[SubClient] = Complete()
ok_covariant: DataSourceTransactionHandler[Client] = Complete()
ok_async: AsyncDataSourceTransactionHandler[Client] = AsyncComplete()
register_data_source(Complete())
register_data_source(AsyncComplete())

not_sub: DataSourceTransactionHandler[SubClient] = MissingDestroy()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
no_destroy: DataSourceTransactionHandler[Client] = MissingDestroy()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
wrong_invoke: DataSourceTransactionHandler[Client] = WrongInvoke()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
wrong_return: DataSourceTransactionHandler[Client] = InvokeReturnsWrongType()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
sync_as_async: AsyncDataSourceTransactionHandler[Client] = Complete()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
register_data_source(MissingDestroy())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
register_data_source(WrongInvoke())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
