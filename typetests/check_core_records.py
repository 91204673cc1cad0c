"""Typetests: DBOSConfig, the DBOS runtime object, WorkflowStatus and StepInfo records.

DBOSConfig is a frozen attrs record: only ``name`` is positional, unknown keywords and
wrong types are rejected, assignment is rejected. Records read from the system database
are frozen and their fields typed. Checked, never run.
"""

import logging
from typing import Any, assert_type

import attrs

from dbos_sdk import (
    DBOS,
    DBOSConfig,
    JSONSerializer,
    PickleSerializer,
    Serializer,
    StepInfo,
    WorkflowStatus,
)


class Base64Json:
    """A user serializer: satisfies the Serializer protocol structurally."""

    @property
    def name(self) -> str:
        return "b64json"

    def serialize(self, value: object) -> str:
        return str(value)

    def deserialize(self, text: str) -> Any:
        return text


class NoDeserialize:
    name: str = "broken"

    def serialize(self, value: object) -> str:
        return ""


def config() -> None:
    cfg = DBOSConfig("app")
    assert_type(cfg, DBOSConfig)
    full = DBOSConfig(
        name="app",
        system_database_url="postgresql://u:p@localhost:5432/app",
        executor_id="exec-1",
        application_version="1.2",
        serializer=JSONSerializer(),
        max_executor_threads=8,
        sys_db_pool_size=4,
        postgres_schema="dbos",
        queue_poll_interval_s=0.5,
        max_recovery_attempts=10,
    )
    DBOSConfig("app", serializer=PickleSerializer())
    DBOSConfig("app", serializer=Base64Json())
    assert_type(full.name, str)
    assert_type(full.system_database_url, str | None)
    assert_type(full.resolved_system_database_url, str)
    assert_type(full.serializer, Serializer)
    assert_type(full.max_executor_threads, int)
    assert_type(full.queue_poll_interval_s, float)
    assert_type(attrs.evolve(cfg, executor_id="exec-2"), DBOSConfig)
    assert_type({cfg: 1}, dict[DBOSConfig, int])  # frozen records hash

    # Unknown keyword, positional option, wrong types.
    DBOSConfig(name="app", sysdb_url="sqlite:///x.sqlite")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    DBOSConfig("app", "sqlite:///x.sqlite")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    DBOSConfig()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    DBOSConfig(name=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    DBOSConfig("app", max_executor_threads="8")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    DBOSConfig("app", system_database_url=5432)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    DBOSConfig("app", serializer=NoDeserialize())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    DBOSConfig("app", serializer="json")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    # Frozen.
    cfg.name = "other"  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
    cfg.max_executor_threads = 1  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
    # evolve's keywords are checked by mypy's attrs plugin only (TYPING.md §6).
    attrs.evolve(cfg, executor="exec-2")  # type: ignore[call-arg]


def runtime() -> None:
    dbos = DBOS(DBOSConfig("app"))
    assert_type(dbos, DBOS)
    assert_type(dbos.config, DBOSConfig)
    assert_type(DBOS.launch(), None)
    assert_type(DBOS.shutdown(), None)
    assert_type(DBOS.shutdown(workflow_timeout_s=2.5), None)
    assert_type(DBOS.logger, logging.Logger)

    DBOS("app")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    DBOS()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    DBOS.launch(DBOSConfig("app"))  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    DBOS.shutdown("10")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def workflow_status(st: WorkflowStatus) -> None:
    assert_type(st.workflow_id, str)
    assert_type(st.status, str)
    assert_type(st.name, str)
    assert_type(st.class_name, str | None)
    assert_type(st.config_name, str | None)
    assert_type(st.input, tuple[tuple[Any, ...], dict[str, Any]] | None)
    assert_type(st.output, Any)
    assert_type(st.error, BaseException | None)
    assert_type(st.executor_id, str | None)
    assert_type(st.application_version, str)
    assert_type(st.queue_name, str | None)
    assert_type(st.priority, int)
    assert_type(st.authenticated_user, str | None)
    assert_type(st.assumed_role, str | None)
    assert_type(st.authenticated_roles, list[str] | None)
    assert_type(st.created_at, int)
    assert_type(st.updated_at, int)
    assert_type(st.started_at, int | None)
    assert_type(st.completed_at, int | None)
    assert_type(st.timeout_ms, int | None)
    assert_type(st.deadline_epoch_ms, int | None)
    assert_type(st.recovery_attempts, int)
    assert_type(st.forked_from, str | None)

    st.status = "SUCCESS"  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
    st.no_such_field = 1  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue]
    WorkflowStatus(workflow_id="id")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    created: str = st.created_at  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    del created


def step_info(s: StepInfo) -> None:
    assert_type(s.function_id, int)
    assert_type(s.function_name, str)
    assert_type(s.output, Any)
    assert_type(s.error, BaseException | None)
    assert_type(s.child_workflow_id, str | None)
    assert_type(s.started_at, int)
    assert_type(s.completed_at, int)

    s.output = 1  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
    StepInfo(1, "f", None, None, None, 0, 0)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
