"""Helpers of the reliability suite (tests/reliability): bad input and faults, run through the real CLI in-process.

Each case is a row of a table: the arguments (and, where needed, a file the user got wrong), what the one-line
error must name, and what must be left on disk. `run_cli` runs `drivestack ...` in this process and returns its
exit status and output; `assert_one_line_error` checks the promise every command makes: exit 2, one line
`drivestack: error: ...` on stderr, no traceback. `tree` snapshots a folder so a case can assert that nothing was
written or that what was there is intact.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivestack.cli import main


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def run_in_process(capsys: pytest.CaptureFixture[str], *args: object) -> CliResult:
    """`drivestack *args` in this process: its exit status, stdout and stderr."""
    capsys.readouterr()  # drop what came before
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def error_lines(result: CliResult) -> list[str]:
    """The stderr lines that are not progress bars (tqdm writes carriage-return frames there)."""
    lines = [line.split("\r")[-1].strip() for line in result.err.split("\n")]  # a tqdm frame ends in \r
    return [line for line in lines if line]


def assert_one_line_error(result: CliResult, *contains: str) -> str:
    """Exit 2 and exactly one `drivestack: error:` line on stderr that names every string in `contains`."""
    lines = error_lines(result)
    errors = [line for line in lines if line.startswith("drivestack: error:")]
    assert result.code == 2, f"exit {result.code}, stderr:\n{result.err[-2000:]}"
    assert len(errors) == 1 and "Traceback" not in result.err, result.err[-2000:]
    for text in contains:
        assert text.lower() in errors[0].lower(), f"{text!r} not in {errors[0]!r}"
    return errors[0]


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `folder` (hidden ones included); {} when it does not exist."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
