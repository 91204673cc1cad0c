"""``python -m dbos_sdk``: the ``dbos-sdk`` command line."""

from dbos_sdk._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
