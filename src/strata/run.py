"""The one way to spawn a process."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

from strata.errors import ErrorKind, StrataError


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    capture: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    input: bytes | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv without a shell. A missing program or (with check) a non-zero exit is a
    StrataError whose message names the command and carries the last line of its stderr."""
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.run(
            list(argv),
            check=False,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            env=full_env,
            cwd=cwd,
            input=input,
            timeout=timeout,
        )
    except FileNotFoundError as exc:
        raise StrataError(
            f"{argv[0]}: command not found",
            hint="install the package that provides it",
            kind=ErrorKind.NOT_FOUND,
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise StrataError(f"{argv[0]}: timed out after {timeout}s") from exc
    if check and proc.returncode != 0:
        err = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
        last = err[-1] if err else f"exit status {proc.returncode}"
        raise StrataError(f"{argv[0]} failed: {last}", kind=ErrorKind.SYSTEM)
    return proc
