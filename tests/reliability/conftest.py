"""The reliability suite's fixture: `run_cli(*args) -> CliResult` runs `drivestack *args` in-process.

The assertions (`assert_one_line_error`, `error_lines`, `tree`) live in cli_faults.py.
"""

from __future__ import annotations

import pytest
from cli_faults import CliResult, run_in_process


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """`run_cli(*args) -> CliResult`: `drivestack *args` in-process (status, stdout, stderr)."""

    def run(*args: object) -> CliResult:
        return run_in_process(capsys, *args)

    return run
