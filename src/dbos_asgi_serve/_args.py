"""Arguments of a route's function: from path, query string and JSON body, checked against
the function's signature (a failure is a 400 whose message names the argument)."""

import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

from starlette.requests import Request

from dbos_sdk import DBOSConfigurationError

_NO_HINT: Any = inspect.Parameter.empty
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class BadArguments(Exception):
    """The request's arguments do not fit the function (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    hint: object
    required: bool


@dataclass(frozen=True, slots=True)
class Signature:
    """What a route needs to know of its function's parameters."""

    function: str
    params: tuple[Param, ...]
    takes_extra: bool
    """The function has ``**kwargs``: unknown arguments are passed on."""

    @classmethod
    def of(cls, func: Callable[..., object], function: str, where: str) -> "Signature":
        try:
            sig = inspect.signature(func)
        except (TypeError, ValueError) as exc:
            raise DBOSConfigurationError(f"{where}: cannot read the signature: {exc}") from exc
        try:
            hints = typing.get_type_hints(func)
        except Exception:  # unresolvable forward references: check nothing for them
            hints = {}
        params: list[Param] = []
        extra = False
        for p in sig.parameters.values():
            if p.kind is p.POSITIONAL_ONLY:
                raise DBOSConfigurationError(
                    f"{where}: parameter {p.name!r} is positional-only; a route passes "
                    "arguments by name."
                )
            if p.kind is p.VAR_POSITIONAL:
                continue
            if p.kind is p.VAR_KEYWORD:
                extra = True
                continue
            hint = hints.get(p.name, p.annotation)
            params.append(Param(p.name, hint, p.default is p.empty))
        return cls(function, tuple(params), extra)


async def read_arguments(request: Request, sig: Signature) -> dict[str, object]:
    """The keyword arguments for ``sig`` from the request, converted and checked."""
    sources: list[tuple[str, dict[str, object]]] = [("path", dict(request.path_params))]
    query: dict[str, object] = {}
    by_name = {p.name: p for p in sig.params}
    for name in request.query_params:
        given = request.query_params.getlist(name)
        param = by_name.get(name)
        wants_list = param is not None and _takes_sequence(param.hint)
        query[name] = given if wants_list else given[-1]
    sources.append(("query string", query))
    if request.method in _BODY_METHODS:
        body = await request.body()
        if body.strip():
            try:
                data: object = json.loads(body)
            except ValueError as exc:
                raise BadArguments(f"the request body is not valid JSON: {exc}") from None
            if not isinstance(data, dict):
                raise BadArguments(
                    "the request body must be a JSON object of argument names to values, "
                    f"not {_json_kind(data)}."
                )
            sources.append(("JSON body", typing.cast(dict[str, object], data)))
    raw: dict[str, tuple[str, object]] = {}
    for where, values in sources:
        for name, value in values.items():
            if name in raw:
                raise BadArguments(
                    f"argument {name!r} is given twice (in the {raw[name][0]} and the {where})."
                )
            raw[name] = (where, value)
    return _bind(sig, raw)


def _bind(sig: Signature, raw: Mapping[str, tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    known = {p.name for p in sig.params}
    unknown = sorted(set(raw) - known)
    if unknown and not sig.takes_extra:
        raise BadArguments(
            f"{sig.function}() takes no argument {', '.join(map(repr, unknown))} "
            f"(its arguments: {', '.join(p.name for p in sig.params) or 'none'})."
        )
    for p in sig.params:
        if p.name not in raw:
            if p.required:
                raise BadArguments(f"{sig.function}() needs argument {p.name!r}.")
            continue
        where, value = raw[p.name]
        from_text = where != "JSON body"
        out[p.name] = convert(value, p.hint, f"argument {p.name!r}", from_text=from_text)
    for name in unknown:
        out[name] = raw[name][1]
    return out


def convert(value: object, hint: object, what: str, *, from_text: bool = False) -> object:
    """``value`` checked against (and, for text from a URL, converted to) ``hint``.

    JSON types are checked: str, int, float, bool, None, unions, Literal, list/tuple/
    Sequence and dict/Mapping with str keys. Other types are passed on as they are.
    """
    if hint is _NO_HINT or hint is Any or hint is object:
        return value
    origin = _origin(hint)
    args = typing.get_args(hint)
    if origin is Union or origin is types.UnionType:
        for member in sorted(args, key=lambda a: a is str):  # try str last for URL text
            try:
                return convert(value, member, what, from_text=from_text)
            except BadArguments:
                pass
        raise BadArguments(f"{what} must be {_name(hint)}, not {_show(value)}.")
    if hint is None or hint is types.NoneType:
        if value is None or (from_text and value == "null"):
            return None
    elif origin is Literal:
        for choice in args:
            if value == choice or (from_text and isinstance(value, str) and value == str(choice)):
                return choice
    elif hint is bool:
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_text and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if from_text and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    elif _is_sequence(hint):
        if isinstance(value, list):
            items = typing.cast(list[object], value)
            item_hint: object = args[0] if args and (len(args) == 1 or args[1] is ...) else Any
            checked = [
                convert(v, item_hint, f"{what}[{i}]", from_text=from_text)
                for i, v in enumerate(items)
            ]
            return tuple(checked) if origin is tuple or hint is tuple else checked
    elif _one_of(origin, dict, Mapping) or hint is dict:
        if isinstance(value, dict):
            entries = typing.cast(dict[object, object], value)
            value_hint: object = args[1] if len(args) == 2 else Any
            return {
                k: convert(v, value_hint, f"{what}[{k!r}]", from_text=from_text)
                for k, v in entries.items()
            }
    else:
        return value  # not a JSON type: the function gets the value as it came
    raise BadArguments(f"{what} must be {_name(hint)}, not {_show(value)}.")


def _origin(hint: object) -> object:
    return typing.get_origin(hint)


def _one_of(value: object, *options: object) -> bool:
    return any(value is o for o in options)


def _takes_sequence(hint: object) -> bool:
    """The hint is a sequence type, or a union with one (``list[str] | None``)."""
    if _one_of(_origin(hint), Union, types.UnionType):
        return any(_is_sequence(member) for member in typing.get_args(hint))
    return _is_sequence(hint)


def _is_sequence(hint: object) -> bool:
    """list, tuple or Sequence, bare or parameterized."""
    return _one_of(_origin(hint), list, tuple, Sequence) or _one_of(hint, list, tuple)


def _name(hint: object) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _show(value: object) -> str:
    text = repr(value)
    return f"{_json_kind(value)} {text if len(text) <= 60 else text[:57] + '...'}"


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
