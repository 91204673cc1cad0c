"""``python -m dbos_sdk_demo``: the demo's app process, which ``dbos-sdk demo`` runs (twice)."""

import sys

from ._protocol import AppSettings, DemoError


def _main() -> int:
    try:
        AppSettings.from_env()  # before the app's import configures DBOS with them
    except DemoError as exc:
        print(f"python -m dbos_sdk_demo: {exc}", file=sys.stderr)
        return 2
    from . import app

    return app.main()


if __name__ == "__main__":
    raise SystemExit(_main())
