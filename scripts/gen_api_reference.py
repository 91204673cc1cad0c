"""Generate docs/reference.md, the API reference, from the public modules' docstrings.

Run `.venv/bin/python scripts/gen_api_reference.py` after changing a public name or its
docstring; tests/test_docs.py fails while the committed file is out of date.
"""

import importlib
import inspect
import sys
from pathlib import Path
from types import ModuleType

MODULES = [
    "dbos_sdk",
    "dbos_sdk.errors",
    "dbos_sdk.datasource",
    "dbos_sdk.receiver",
    "dbos_sdk.scheduler",
    "dbos_sdk.testing",
    "dbos_psycopg_datasource",
    "dbos_sqlalchemy_datasource",
    "dbos_sqlite_datasource",
    "dbos_mariadb_datasource",
    "dbos_pgnotify_receive",
    "dbos_asgi_serve",
    "dbos_nats_receive",
    "dbos_rabbitmq_receive",
]
OUT = Path(__file__).resolve().parent.parent / "docs" / "reference.md"


def _signature(obj: object) -> str:
    try:
        return str(inspect.signature(obj))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    except (TypeError, ValueError):
        return ""


def _doc(obj: object) -> str:
    doc = inspect.getdoc(obj)
    return doc.strip() if doc else "*(no docstring)*"


def _public_names(module: ModuleType) -> list[str]:
    names: list[str] | None = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_")
            and getattr(v, "__module__", "").startswith(module.__name__)
            and (inspect.isclass(v) or inspect.isfunction(v))
        ]
    return sorted(names)


def _members(cls: type) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for name, value in vars(cls).items():
        if name.startswith("_") and name != "__init__":
            continue
        raw = value.__func__ if isinstance(value, staticmethod | classmethod) else value
        if inspect.isfunction(raw) or isinstance(value, property):
            out.append((name, raw))
    return out


def render() -> str:
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `scripts/gen_api_reference.py`; do not edit by hand.",
        "",
    ]
    for modname in MODULES:
        try:
            module = importlib.import_module(modname)
        except ImportError:
            continue
        lines += [f"## `{modname}`", "", _doc(module), ""]
        for name in _public_names(module):
            obj = getattr(module, name)
            if inspect.isclass(obj):
                lines += [f"### class `{name}{_signature(obj)}`", "", _doc(obj), ""]
                for mname, member in _members(obj):
                    if isinstance(member, property):
                        lines += [f"- **`{mname}`** (property): {_doc(member)}"]
                    elif mname != "__init__":
                        first = _doc(member).splitlines()[0]
                        lines += [f"- **`{mname}{_signature(member)}`**: {first}"]
                lines.append("")
            elif inspect.isfunction(obj) or inspect.ismethod(obj):
                lines += [f"### `{name}{_signature(obj)}`", "", _doc(obj), ""]
            else:  # a type alias or constant: its value is its documentation
                lines += [f"### `{name}`", "", f"`{obj!r}`", ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run scripts/gen_api_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
