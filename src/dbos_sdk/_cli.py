"""The ``dbos-sdk`` command line: inspect and manage the workflows of a system database,
create or upgrade its schema, and run the durability demo.

It works on the system database directly (no launched runtime): ``resume`` and ``fork``
only enqueue, and a launched DBOS process then runs the workflow. Exit codes are the
``EXIT_*`` constants below, documented in ``dbos-sdk --help``.
"""

import argparse
import dataclasses
import json
import os
import shlex
import sqlite3
import sys
import tempfile
import uuid
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from dbos_sdk._config import DBOSConfig, parse_database_url, redact_url
from dbos_sdk._serialization import JSONSerializer, PickleSerializer, Serializer
from dbos_sdk._sysdb import (
    INTERNAL_QUEUE,
    TERMINAL_STATUSES,
    StepRow,
    SystemDatabase,
    WorkflowFilter,
    WorkflowRow,
    open_system_database,
)
from dbos_sdk.errors import DBOSDatabaseConnectionError, DBOSError, DBOSSchemaVersionError

EXIT_OK = 0
EXIT_FAILED = 1
"""The operation failed: unknown workflow ID, a state that does not allow it, demo failure."""
EXIT_USAGE = 2
"""Bad arguments (argparse's own code)."""
EXIT_DATABASE = 3
"""The database cannot be used: malformed URL, unreachable, missing, no or newer schema."""
EXIT_INTERRUPTED = 130

DB_URL_ENV = "DBOS_SYSTEM_DATABASE_URL"
DEFAULT_DB_URL = "sqlite:///dbos-sdk.sqlite"
DEFAULT_SCHEMA = "dbos"
STATUSES = (
    "PENDING",
    "ENQUEUED",
    "SUCCESS",
    "ERROR",
    "CANCELLED",
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED",
)

_EPILOG = f"""\
database:
  The system database is --db-url, else ${DB_URL_ENV}, else {DEFAULT_DB_URL}
  (dbos-sdk.sqlite in the current directory; `dbos-sdk demo` writes there too).
  An app configured as DBOSConfig(name="shop") with no URL uses sqlite:///shop.sqlite.
  SQLite: sqlite:///relative/path.sqlite or sqlite:////absolute/path.sqlite.
  Postgres: postgresql://user:password@host:5432/database; its tables live in --schema
  (default {DEFAULT_SCHEMA}). Only `migrate` and `demo` create a database or schema.

output:
  Tables for people; --json prints JSON for scripts (errors still go to stderr).
  Inputs, outputs and errors are decoded with the serializer they were written with
  (pickle by default: decoding trusts the database as the app does; --no-decode shows
  the stored text instead). A value that cannot be decoded here is shown as
  "<undecodable ...>"; in JSON a value JSON cannot hold is given as its Python repr.

exit codes:
  0    success
  1    the operation failed: unknown workflow ID, a workflow whose state does not allow
       it (cancel a finished one, resume one that is not cancelled), the demo failed
  2    usage error: unknown command or bad arguments
  3    the database cannot be used: malformed URL, server unreachable, SQLite file
       missing or not a database, no dbos-sdk schema (run `dbos-sdk migrate`), schema
       newer than this dbos-sdk
  130  interrupted (Ctrl-C)
"""


class CommandError(DBOSError):
    """A command failed; ``exit_code`` is what the process exits with."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- the database -------------------------------------------------------------------


@attrs.frozen
class DatabaseTarget:
    """Which system database a command works on."""

    url: str
    schema: str = DEFAULT_SCHEMA

    @property
    def shown(self) -> str:
        """The URL for messages (password hidden), with the schema for Postgres."""
        shown = redact_url(self.url)
        if self.is_postgres:
            return f"{shown} (schema {self.schema!r})"
        return shown

    @property
    def is_postgres(self) -> bool:
        return not self.url.startswith("sqlite:")

    def cli_args(self) -> list[str]:
        """The options that select this database again, for commands we suggest."""
        args = ["--db-url", redact_url(self.url)]
        if self.is_postgres and self.schema != DEFAULT_SCHEMA:
            args += ["--schema", self.schema]
        return args

    def config(self) -> DBOSConfig:
        """A configuration for opening this database from the CLI (a small pool)."""
        try:
            return DBOSConfig(
                "dbos-sdk-cli",
                system_database_url=self.url,
                postgres_schema=self.schema,
                sys_db_pool_size=2,
            )
        except DBOSError as exc:
            raise CommandError(str(exc), EXIT_DATABASE) from exc


def resolve_target(db_url: str | None, schema: str | None) -> DatabaseTarget:
    """--db-url, else the environment, else the default; validated here, once."""
    env_url = os.environ.get(DB_URL_ENV)
    if db_url:
        url, setting = db_url, "--db-url"
    elif env_url:
        url, setting = env_url, f"${DB_URL_ENV}"
    else:
        url, setting = DEFAULT_DB_URL, "the default database URL"
    try:
        parse_database_url(url, setting)
    except DBOSError as exc:
        raise CommandError(str(exc), EXIT_DATABASE) from exc
    return DatabaseTarget(url, schema or DEFAULT_SCHEMA)


def absolute_sqlite_url(url: str) -> str:
    """``sqlite:///rel.sqlite`` made absolute, so that it works from any directory."""
    kind, path = parse_database_url(url, "--db-url")
    if kind != "sqlite" or path == ":memory:":
        return url
    return "sqlite:///" + str(Path(path).resolve())


@contextmanager
def open_database(
    target: DatabaseTarget, *, create: bool = False
) -> Generator[SystemDatabase, None, None]:
    """Open the system database; every failure to use it becomes a CommandError with
    EXIT_DATABASE. Without ``create``, a missing SQLite file is an error (not created)."""
    config = target.config()
    kind, path = parse_database_url(target.url, "--db-url")
    if kind == "sqlite" and not create and path != ":memory:" and not Path(path).is_file():
        raise CommandError(
            f"No system database at {target.shown}: {Path(path).resolve()} does not exist. "
            f"Pass your app's system database with --db-url (or ${DB_URL_ENV}); "
            "`dbos-sdk migrate` creates an empty one.",
            EXIT_DATABASE,
        )
    try:
        sysdb = open_system_database(config)
    except DBOSError as exc:
        raise CommandError(str(exc), EXIT_DATABASE) from exc
    try:
        yield sysdb
    except DBOSSchemaVersionError as exc:
        raise CommandError(str(exc), EXIT_DATABASE) from exc
    except Exception as exc:
        if _is_database_error(exc):
            raise CommandError(_explain_database_error(target, exc), EXIT_DATABASE) from exc
        raise
    finally:
        sysdb.close()


def _is_database_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return True
    if "psycopg" in sys.modules:  # loaded only when a Postgres database was opened
        import psycopg

        return isinstance(exc, psycopg.Error)
    return False


def _explain_database_error(target: DatabaseTarget, exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "no such table" in text or type(exc).__name__ == "UndefinedTable":
        return (
            f"The system database {target.shown} has no dbos-sdk schema ({text}). Check "
            "--db-url and --schema, or run `dbos-sdk migrate` to create the schema."
        )
    return (
        f"The system database {target.shown} failed: {type(exc).__name__}: {text}. Check "
        "that it is reachable and is a dbos-sdk system database."
    )


def find_workflow(sysdb: SystemDatabase, target: DatabaseTarget, workflow_id: str) -> WorkflowRow:
    row = sysdb.get_workflow(workflow_id)
    if row is None:
        raise CommandError(
            f"No workflow with ID {workflow_id!r} in {target.shown}; "
            "`dbos-sdk workflow list` shows the known ones."
        )
    return row


# --- showing values -----------------------------------------------------------------


@attrs.frozen
class Shown:
    """A stored value as people read it (``text``) and as --json gives it (``data``)."""

    text: str
    data: Any


def show_value(value: object) -> Shown:
    if isinstance(value, BaseException):
        text = f"{type(value).__name__}: {value}"
        return Shown(text, text)
    text = _safe_repr(value)
    try:
        json.dumps(value, allow_nan=False)
    except Exception:
        return Shown(text, text)
    return Shown(text, value)


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} object whose repr() failed>"


def _known_serializers() -> dict[str, Serializer]:
    return {s.name: s for s in (PickleSerializer(), JSONSerializer())}


@attrs.frozen
class Decoder:
    """Decodes stored inputs, outputs and errors for display, never raising."""

    enabled: bool = True
    serializers: dict[str, Serializer] = attrs.field(factory=_known_serializers)

    def _load(self, text: str, fmt: str) -> tuple[Any, Shown | None]:
        """``(value, None)``, or ``(None, placeholder)`` when ``text`` cannot be decoded."""
        ser = self.serializers.get(fmt)
        if ser is None:
            return None, _undecodable(fmt, "no serializer of that name in the dbos-sdk CLI")
        try:
            return ser.deserialize(text), None
        except Exception as exc:
            return None, _undecodable(fmt, f"{type(exc).__name__}: {exc}")

    def decode(self, text: str | None, fmt: str) -> Shown | None:
        if text is None:
            return None
        if not self.enabled:
            return Shown(text, text)
        value, failed = self._load(text, fmt)
        return failed or show_value(value)

    def decode_inputs(self, row: WorkflowRow) -> Shown | None:
        """A workflow's (args, kwargs), shown as the call ``name(arg, key=value)``."""
        if row.inputs is None or not self.enabled:
            return self.decode(row.inputs, row.serialization)
        value, failed = self._load(row.inputs, row.serialization)
        if failed is not None:
            return failed
        try:
            args, kwargs = value
            parts = [_safe_repr(a) for a in args]
            parts += [f"{k}={_safe_repr(v)}" for k, v in dict(kwargs).items()]
            data = {
                "args": [show_value(a).data for a in args],
                "kwargs": {str(k): show_value(v).data for k, v in dict(kwargs).items()},
            }
        except Exception:
            return show_value(value)  # not an (args, kwargs) pair: show it as it is
        return Shown(f"{row.name}(" + ", ".join(parts) + ")", data)


def _undecodable(fmt: str, reason: str) -> Shown:
    text = f"<undecodable {fmt} value: {' '.join(reason.split())}>"
    return Shown(text, text)


def _time(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _duration(start: int | None, end: int | None) -> str:
    if start is None or end is None:
        return ""
    ms = end - start
    return f"{ms}ms" if ms < 1000 else f"{ms / 1000:.2f}s"


def clip(text: str, width: int) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned with two spaces between them, headers first."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()
        for cells in [headers, *rows]
    ]
    return "\n".join(lines)


def workflow_json(row: WorkflowRow, dec: Decoder) -> dict[str, Any]:
    data: dict[str, Any] = {
        k: v for k, v in dataclasses.asdict(row).items() if k not in ("inputs", "output", "error")
    }
    for key, shown in (
        ("input", dec.decode_inputs(row)),
        ("output", dec.decode(row.output, row.serialization)),
        ("error", dec.decode(row.error, row.serialization)),
    ):
        data[key] = shown.data if shown is not None else None
    return data


def step_json(step: StepRow, dec: Decoder) -> dict[str, Any]:
    data: dict[str, Any] = dataclasses.asdict(step)
    for key, text in (("output", step.output), ("error", step.error)):
        shown = dec.decode(text, step.serialization)
        data[key] = shown.data if shown is not None else None
    return data


def _result_text(row: WorkflowRow, dec: Decoder, width: int) -> str:
    shown = dec.decode(row.error, row.serialization) or dec.decode(row.output, row.serialization)
    return clip(shown.text, width) if shown is not None else ""


def workflows_table(rows: Sequence[WorkflowRow], dec: Decoder) -> str:
    return render_table(
        ["WORKFLOW ID", "STATUS", "NAME", "QUEUE", "CREATED", "DURATION", "OUTPUT / ERROR"],
        [
            [
                r.workflow_id,
                r.status,
                r.name,
                r.queue_name or "",
                _time(r.created_at),
                _duration(r.started_at or r.created_at, r.completed_at),
                _result_text(r, dec, 50),
            ]
            for r in rows
        ],
    )


def steps_table(steps: Sequence[StepRow], dec: Decoder, width: int = 60) -> str:
    table: list[list[str]] = []
    for s in steps:
        error = dec.decode(s.error, s.serialization)
        output = dec.decode(s.output, s.serialization)
        if s.child_workflow_id is not None:
            outcome, shown = "CHILD", s.child_workflow_id
        elif error is not None:
            outcome, shown = "ERROR", error.text
        else:
            outcome, shown = "OK", output.text if output is not None else "None"
        table.append(
            [
                str(s.function_id),
                s.function_name,
                outcome,
                _duration(s.started_at, s.completed_at),
                clip(shown, width),
            ]
        )
    return render_table(["STEP", "NAME", "OUTCOME", "DURATION", "OUTPUT / ERROR / CHILD"], table)


def workflow_details(row: WorkflowRow, dec: Decoder) -> str:
    fields: list[tuple[str, str | None]] = [
        ("Workflow ID", row.workflow_id),
        ("Status", row.status),
        ("Name", row.name),
        ("Class", row.class_name),
        ("Config", row.config_name),
        ("Queue", row.queue_name),
        ("Executor", row.executor_id),
        ("App version", row.application_version or None),
        ("Created", _time(row.created_at)),
        ("Started", _time(row.started_at) or None),
        ("Completed", _time(row.completed_at) or None),
        ("Duration", _duration(row.started_at, row.completed_at) or None),
        ("Timeout", f"{row.timeout_ms}ms" if row.timeout_ms is not None else None),
        ("Deadline", _time(row.deadline_epoch_ms) or None),
        ("Recoveries", str(row.recovery_attempts) if row.recovery_attempts else None),
        ("Forked from", row.forked_from),
        ("User", row.authenticated_user),
        ("Roles", ", ".join(row.authenticated_roles) if row.authenticated_roles else None),
        ("Assumed role", row.assumed_role),
    ]
    inputs = dec.decode_inputs(row)
    output = dec.decode(row.output, row.serialization)
    error = dec.decode(row.error, row.serialization)
    fields.append(("Input", inputs.text if inputs is not None else None))
    if row.status == "SUCCESS" or output is not None:
        fields.append(("Output", output.text if output is not None else "None"))
    fields.append(("Error", error.text if error is not None else None))
    shown = [(k, v) for k, v in fields if v is not None]
    width = max(len(k) for k, _ in shown) + 2
    return "\n".join(f"{(k + ':').ljust(width)}{v}" for k, v in shown)


# --- commands -----------------------------------------------------------------------


@attrs.frozen
class Context:
    """What every command gets: the database, the output mode, the decoder."""

    target: DatabaseTarget
    as_json: bool
    decoder: Decoder

    def emit_json(self, data: object) -> None:
        print(json.dumps(data, indent=2, default=str))


Handler = Callable[[Context, argparse.Namespace], int]


def cmd_migrate(ctx: Context, ns: argparse.Namespace) -> int:
    with open_database(ctx.target, create=True) as sysdb:
        version = sysdb.migrate()
    if ctx.as_json:
        ctx.emit_json(
            {
                "database": redact_url(ctx.target.url),
                "schema": ctx.target.schema,
                "schema_version": version,
            }
        )
    else:
        print(f"System database {ctx.target.shown} is at schema version {version}.")
    return EXIT_OK


_NO_LIMIT = 2**62


def cmd_list(ctx: Context, ns: argparse.Namespace) -> int:
    statuses: list[str] | None = ns.status
    since: datetime | None = ns.since
    until: datetime | None = ns.until
    limit: int = ns.limit
    offset: int = ns.offset
    f = WorkflowFilter(
        status=statuses,
        name=ns.name,
        queue_name=ns.queue,
        executor_id=ns.executor,
        start_time_ms=int(since.timestamp() * 1000) if since is not None else None,
        end_time_ms=int(until.timestamp() * 1000) if until is not None else None,
        limit=limit or (_NO_LIMIT if offset else None),  # the SQL has OFFSET only with LIMIT
        offset=offset or None,
        newest_first=not ns.oldest_first,
    )
    with open_database(ctx.target) as sysdb:
        rows = sysdb.list_workflows(f)
    if ctx.as_json:
        ctx.emit_json([workflow_json(r, ctx.decoder) for r in rows])
    elif not rows:
        print(f"No workflows match in {ctx.target.shown}.")
    else:
        print(workflows_table(rows, ctx.decoder))
        if limit and len(rows) == limit:
            print(f"(first {limit} shown; --limit 0 shows all)", file=sys.stderr)
    return EXIT_OK


def cmd_get(ctx: Context, ns: argparse.Namespace) -> int:
    with open_database(ctx.target) as sysdb:
        row = find_workflow(sysdb, ctx.target, ns.workflow_id)
    if ctx.as_json:
        ctx.emit_json(workflow_json(row, ctx.decoder))
    else:
        print(workflow_details(row, ctx.decoder))
    return EXIT_OK


def cmd_steps(ctx: Context, ns: argparse.Namespace) -> int:
    with open_database(ctx.target) as sysdb:
        find_workflow(sysdb, ctx.target, ns.workflow_id)
        steps = sysdb.get_steps(ns.workflow_id)
    if ctx.as_json:
        ctx.emit_json([step_json(s, ctx.decoder) for s in steps])
    elif not steps:
        print(f"Workflow {ns.workflow_id!r} has no recorded steps yet.")
    else:
        print(steps_table(steps, ctx.decoder))
    return EXIT_OK


def cmd_cancel(ctx: Context, ns: argparse.Namespace) -> int:
    workflow_id: str = ns.workflow_id
    with open_database(ctx.target) as sysdb:
        status = sysdb.cancel_workflow(workflow_id)
    if status is None:
        raise CommandError(f"No workflow with ID {workflow_id!r} in {ctx.target.shown}.")
    if status != "CANCELLED":
        raise CommandError(
            f"Workflow {workflow_id!r} already finished with status {status}; "
            "only PENDING or ENQUEUED workflows can be cancelled."
        )
    if ctx.as_json:
        ctx.emit_json({"workflow_id": workflow_id, "status": status})
    else:
        print(
            f"Workflow {workflow_id!r} is CANCELLED: if it is running, it stops before its "
            f"next step. `dbos-sdk workflow resume {shlex.quote(workflow_id)}` runs it again."
        )
    return EXIT_OK


def cmd_resume(ctx: Context, ns: argparse.Namespace) -> int:
    workflow_id: str = ns.workflow_id
    with open_database(ctx.target) as sysdb:
        status = sysdb.resume_workflow(workflow_id)
        row = sysdb.get_workflow(workflow_id)
    if status is None or row is None:
        raise CommandError(f"No workflow with ID {workflow_id!r} in {ctx.target.shown}.")
    if status != "ENQUEUED":
        hint = (
            f"fork it to run it again: `dbos-sdk workflow fork {shlex.quote(workflow_id)}`"
            if status in TERMINAL_STATUSES
            else "it is running, or its executor recovers it when it launches"
        )
        raise CommandError(
            f"Workflow {workflow_id!r} is {status}; only CANCELLED or "
            f"MAX_RECOVERY_ATTEMPTS_EXCEEDED workflows can be resumed ({hint})."
        )
    if ctx.as_json:
        ctx.emit_json({"workflow_id": workflow_id, "status": status, "queue_name": INTERNAL_QUEUE})
    else:
        print(
            f"Workflow {workflow_id!r} is ENQUEUED again: a launched DBOS app that registers "
            f"workflow {row.name!r} runs it from its last completed step."
        )
    return EXIT_OK


def cmd_fork(ctx: Context, ns: argparse.Namespace) -> int:
    workflow_id: str = ns.workflow_id
    start_step: int = ns.step
    new_id: str = ns.new_id or str(uuid.uuid4())
    with open_database(ctx.target) as sysdb:
        original = find_workflow(sysdb, ctx.target, workflow_id)
        if sysdb.get_workflow(new_id) is not None:
            raise CommandError(
                f"A workflow with ID {new_id!r} already exists; give --new-id another ID."
            )
        if not sysdb.fork_workflow(workflow_id, start_step, new_id, ns.application_version):
            raise CommandError(f"No workflow with ID {workflow_id!r} in {ctx.target.shown}.")
    if ctx.as_json:
        ctx.emit_json(
            {
                "workflow_id": new_id,
                "forked_from": workflow_id,
                "start_step": start_step,
                "status": "ENQUEUED",
                "queue_name": INTERNAL_QUEUE,
            }
        )
    else:
        print(
            f"Forked {workflow_id!r} as {new_id!r} (ENQUEUED): steps before {start_step} are "
            f"copied and replayed, the rest run anew when a launched DBOS app that registers "
            f"workflow {original.name!r} picks it up."
        )
        print(f"Follow it: dbos-sdk workflow get {shlex.quote(new_id)}")
    return EXIT_OK


def cmd_demo(ctx: Context, ns: argparse.Namespace) -> int:
    # The demo is an application of the SDK, in a package of its own (it uses a datasource
    # plugin): imported only when asked for, so that the core does not depend on it.
    from dbos_sdk_demo import DemoDatabase, run_demo

    explicit = ns.db_url or os.environ.get(DB_URL_ENV)
    target = ctx.target if explicit else _demo_default_target(quiet=ctx.as_json)
    target = DatabaseTarget(absolute_sqlite_url(target.url), target.schema)
    db = DemoDatabase(
        url=target.url,
        schema=target.schema,
        shown=target.shown,
        cli_args=tuple(target.cli_args()),
    )
    try:
        return run_demo(db, as_json=ctx.as_json)
    except (DBOSDatabaseConnectionError, DBOSSchemaVersionError) as exc:
        raise CommandError(str(exc), EXIT_DATABASE) from exc


def _demo_default_target(*, quiet: bool) -> DatabaseTarget:
    """The default database, or one in the temporary directory if the current directory is
    not writable (the demo writes its databases beside each other)."""
    if os.access(Path.cwd(), os.W_OK):
        return DatabaseTarget(DEFAULT_DB_URL)
    path = Path(tempfile.gettempdir()) / "dbos-sdk-demo" / "dbos-sdk.sqlite"
    path.parent.mkdir(exist_ok=True)
    if not quiet:
        print(f"(The current directory is not writable: the demo uses {path}.)")
    return DatabaseTarget(f"sqlite:///{path}")


# --- the parser ---------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive (step IDs start at 1)")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _statuses(text: str) -> list[str]:
    out = [s.strip().upper() for s in text.split(",") if s.strip()]
    for s in out:
        if s not in STATUSES:
            raise argparse.ArgumentTypeError(f"{s!r} is not one of {', '.join(STATUSES)}")
    return out


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date or time (e.g. 2025-01-31 or 2025-01-31T14:00)"
        ) from None


def _add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On subcommands the defaults are SUPPRESS, so an option given before the subcommand
    # is not overwritten by the subcommand's default.
    def d(value: object) -> object:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("common options")
    group.add_argument(
        "--db-url",
        metavar="URL",
        default=d(None),
        help=f"system database URL (default: ${DB_URL_ENV}, else {DEFAULT_DB_URL})",
    )
    group.add_argument(
        "--schema",
        metavar="NAME",
        default=d(None),
        help=f"Postgres schema of the system database tables (default: {DEFAULT_SCHEMA})",
    )
    group.add_argument(
        "--json", action="store_true", default=d(False), help="print JSON for scripts"
    )
    group.add_argument(
        "--no-decode",
        action="store_true",
        default=d(False),
        help="show stored values as stored, without deserializing them",
    )


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, top=False)
    parser = argparse.ArgumentParser(
        prog="dbos-sdk",
        description="Inspect and manage durable workflows in a dbos-sdk system database.",
        epilog=_EPILOG,
        formatter_class=fmt,
    )
    _add_common(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        formatter_class=fmt,
        help="watch a workflow, a transaction and a schedule survive a SIGKILL (SQLite)",
        description=(
            "Run an app in a child process: a 5-step workflow whose step 3 is a SQLite\n"
            "transaction, and a workflow scheduled every 2 s. SIGKILL it inside step 4,\n"
            "leave it dead for two ticks, restart it in a fresh process and watch DBOS\n"
            "recover: steps 1-3 (the transaction too) are not run again, the order row\n"
            "exists once, and the missed ticks run once each. Takes about 10 seconds.\n"
            f"Writes to the system database (default {DEFAULT_DB_URL}) and, beside it,\n"
            "to the app's dbos-sdk-demo-orders.sqlite."
        ),
        epilog=_EPILOG,
    )
    demo.set_defaults(handler=cmd_demo)

    migrate = commands.add_parser(
        "migrate",
        parents=[common],
        formatter_class=fmt,
        help="create or upgrade the system database schema; print its version",
        description="Create or upgrade the system database schema and print its version.",
        epilog=_EPILOG,
    )
    migrate.set_defaults(handler=cmd_migrate)

    workflow = commands.add_parser(
        "workflow",
        parents=[common],
        formatter_class=fmt,
        help="list, inspect, cancel, resume or fork workflows",
        description="List, inspect, cancel, resume or fork the workflows of a system database.",
        epilog=_EPILOG,
    )
    actions = workflow.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = actions.add_parser(
            name,
            parents=[common],
            formatter_class=fmt,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            epilog=_EPILOG,
        )
        p.set_defaults(handler=handler)
        return p

    ls = action("list", cmd_list, "list workflows, newest first")
    ls.add_argument(
        "--status",
        type=_statuses,
        action="extend",
        metavar="STATUS[,STATUS]",
        help=f"only these statuses (comma-separated or repeated): {', '.join(STATUSES)}",
    )
    ls.add_argument("--name", help="only workflows of this function name")
    ls.add_argument("--queue", help="only workflows of this queue")
    ls.add_argument("--executor", help="only workflows of this executor ID")
    ls.add_argument("--since", type=_when, metavar="TIME", help="created at or after (ISO)")
    ls.add_argument("--until", type=_when, metavar="TIME", help="created at or before (ISO)")
    ls.add_argument(
        "--limit", type=_count, default=50, metavar="N", help="at most N (default 50; 0: all)"
    )
    ls.add_argument("--offset", type=_count, default=0, metavar="N", help="skip the first N")
    ls.add_argument("--oldest-first", action="store_true", help="oldest first")

    for name, handler, text in (
        ("get", cmd_get, "show one workflow: status, input, output or error"),
        ("steps", cmd_steps, "show the recorded steps of a workflow"),
        ("cancel", cmd_cancel, "cancel a PENDING or ENQUEUED workflow"),
        (
            "resume",
            cmd_resume,
            "enqueue a CANCELLED (or recovery-exhausted) workflow again; "
            "a launched app runs it from its last completed step",
        ),
    ):
        action(name, handler, text).add_argument("workflow_id", metavar="WORKFLOW_ID")

    fork = action(
        "fork",
        cmd_fork,
        "start a copy of a workflow that replays its steps before --step and runs the rest; "
        "a launched app runs it",
    )
    fork.add_argument("workflow_id", metavar="WORKFLOW_ID")
    fork.add_argument(
        "--step",
        type=_positive_int,
        default=1,
        metavar="N",
        help="first step to run anew (default 1: rerun everything)",
    )
    fork.add_argument("--new-id", metavar="ID", help="ID of the copy (default: a new UUID)")
    fork.add_argument("--application-version", metavar="V", help="application version of the copy")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (see ``dbos-sdk --help``)."""
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error (argparse printed it)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler: Handler = ns.handler
    try:
        ctx = Context(
            target=resolve_target(ns.db_url, ns.schema),
            as_json=bool(ns.json),
            decoder=Decoder(enabled=not ns.no_decode),
        )
        return handler(ctx, ns)
    except CommandError as exc:
        print(f"dbos-sdk: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except DBOSError as exc:
        print(f"dbos-sdk: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("dbos-sdk: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
