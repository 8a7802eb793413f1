"""The psql command: env-free, pipe-safe, and never carrying a password."""

from __future__ import annotations

import os
import shlex

from engine.ledger.db import normalize_url
from engine.psql import psql_argv, psql_command, psql_env

URL = normalize_url("postgresql://trader:s3cret@db.example:5433/ledger")


def test_the_command_has_no_password_and_psql_gets_it_from_the_environment() -> None:
    command = psql_command(URL)
    assert "s3cret" not in command
    assert "postgresql://trader@db.example:5433/ledger" in command
    assert psql_env(URL) == {"PGPASSWORD": "s3cret"}
    assert psql_env(URL.set(password=None)._replace(password=None)) == {}


def test_the_command_is_pipe_safe_and_names_an_executable_psql_by_absolute_path() -> None:
    argv = shlex.split(psql_command(URL))
    assert os.path.isabs(argv[0])
    assert os.access(argv[0], os.X_OK)
    for flag in ("-X", "pager=off", "ON_ERROR_STOP=1"):
        assert flag in argv
    assert psql_argv(URL, ["-c", "SELECT 1"])[-2:] == ["-c", "SELECT 1"]
