"""Plugins stand on the public API alone: no plugin module imports a private dbos_sdk module.

This is the proof that the contract in dbos_sdk, dbos_sdk.datasource and dbos_sdk.receiver
is enough for a third party to write a datasource or a receiver.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PUBLIC = {
    "dbos_sdk",
    "dbos_sdk.datasource",
    "dbos_sdk.receiver",
    "dbos_sdk.errors",
    "dbos_sdk.scheduler",
    "dbos_sdk.testing",
}


def _plugin_modules() -> list[Path]:
    files = [
        p
        for d in SRC.iterdir()
        if d.is_dir() and d.name.startswith("dbos_") and d.name != "dbos_sdk"
        for p in d.rglob("*.py")
    ]
    scheduler = SRC / "dbos_sdk" / "scheduler.py"
    if scheduler.exists():
        files.append(scheduler)
    return sorted(files)


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
            found.append((node.lineno, node.module))
    return found


def test_plugins_import_only_public_dbos_sdk_modules() -> None:
    offenders: list[str] = []
    for path in _plugin_modules():
        for line, name in _imported_modules(path):
            if name != "dbos_sdk" and not name.startswith("dbos_sdk."):
                continue
            parts = name.split(".")
            if any(part.startswith("_") for part in parts):
                offenders.append(f"{path.relative_to(SRC)}:{line} imports {name}")
            elif name not in PUBLIC and ".".join(parts[:-1]) not in PUBLIC:
                offenders.append(f"{path.relative_to(SRC)}:{line} imports non-public {name}")
    assert offenders == [], "plugins must use only the public dbos_sdk API:\n" + "\n".join(
        offenders
    )


def test_the_contract_check_catches_a_private_import(tmp_path: Path) -> None:
    bad = tmp_path / "plugin.py"
    bad.write_text("from dbos_sdk._workflow import runtime_for\nimport dbos_sdk._sysdb\n")
    names = [name for _, name in _imported_modules(bad)]
    assert "dbos_sdk._workflow" in names and "dbos_sdk._sysdb" in names
