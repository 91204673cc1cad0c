"""The system database schema, as numbered migrations shared by both backends.

Each migration is a list of statements with ``{ws}``, ``{ops}``, ``{kv}`` and ``{ver}`` standing
for the (schema-qualified) table names, and ``{ix}`` for an index-name prefix. The types
used (TEXT, BIGINT, INTEGER, DOUBLE PRECISION) mean the same in SQLite and PostgreSQL.
"""

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS {ws} (
            workflow_uuid TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            name TEXT NOT NULL,
            class_name TEXT,
            config_name TEXT,
            inputs TEXT,
            output TEXT,
            error TEXT,
            serialization TEXT NOT NULL,
            executor_id TEXT,
            application_version TEXT NOT NULL DEFAULT '',
            queue_name TEXT,
            priority INTEGER NOT NULL DEFAULT 0,
            authenticated_user TEXT,
            assumed_role TEXT,
            authenticated_roles TEXT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            started_at BIGINT,
            completed_at BIGINT,
            timeout_ms BIGINT,
            deadline_epoch_ms BIGINT,
            recovery_attempts INTEGER NOT NULL DEFAULT 0,
            forked_from TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS {ix}ws_queue ON {ws} (queue_name, status, priority, created_at)",
        "CREATE INDEX IF NOT EXISTS {ix}ws_status_executor ON {ws} (status, executor_id)",
        "CREATE INDEX IF NOT EXISTS {ix}ws_created ON {ws} (created_at)",
        """CREATE TABLE IF NOT EXISTS {ops} (
            workflow_uuid TEXT NOT NULL,
            function_id INTEGER NOT NULL,
            function_name TEXT NOT NULL,
            output TEXT,
            error TEXT,
            child_workflow_id TEXT,
            serialization TEXT NOT NULL,
            started_at BIGINT NOT NULL,
            completed_at BIGINT NOT NULL,
            PRIMARY KEY (workflow_uuid, function_id)
        )""",
        """CREATE TABLE IF NOT EXISTS {kv} (
            service_name TEXT NOT NULL,
            workflow_fn_name TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT,
            update_time DOUBLE PRECISION,
            update_seq BIGINT,
            PRIMARY KEY (service_name, workflow_fn_name, key)
        )""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this code writes and expects."""
