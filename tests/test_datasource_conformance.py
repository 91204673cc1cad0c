"""The datasource conformance suite (dbos_sdk.testing.DataSourceConformance), run over
each of this repository's datasources against the real Postgres server and real SQLite
files. Their kits are in children/ds_kits.py; when Postgres is unreachable the Postgres
classes skip loudly, or fail when CI is set.
"""

from dbos_sdk.testing import DataSourceConformance


class TestPsycopgConformance(DataSourceConformance):
    kit_factory = "children.ds_kits:PsycopgKit"


class TestAsyncPsycopgConformance(DataSourceConformance):
    kit_factory = "children.ds_kits:AsyncPsycopgKit"


class TestSQLAlchemyConformance(DataSourceConformance):
    kit_factory = "children.ds_kits:SQLAlchemyKit"


class TestAsyncSQLAlchemyConformance(DataSourceConformance):
    kit_factory = "children.ds_kits:AsyncSQLAlchemyKit"


class TestSQLiteConformance(DataSourceConformance):
    kit_factory = "children.ds_kits:SQLiteKit"
