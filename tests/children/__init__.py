"""Programs the tests run as child processes (so that a test can SIGKILL a real process),
and the harness the tests use to start, watch and kill them."""
