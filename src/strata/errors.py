"""The one error type. Every failure the user sees is a StrataError with a one-line message."""

from __future__ import annotations

import enum
import errno as _errno


class ErrorKind(enum.Enum):
    """What went wrong, coarsely; fronts map it to exit codes and typed varlink errors."""

    USAGE = "usage"  # bad command line or parameters
    INVALID = "invalid"  # malformed input: release file, image, name
    NOT_FOUND = "not-found"
    BUSY = "busy"  # already merged, locked, in use
    PERMISSION = "permission"
    UNSUPPORTED = "unsupported"  # the kernel or machine lacks a feature
    SYSTEM = "system"  # a syscall or subprocess failed
    INCOMPATIBLE = "incompatible"  # release data does not match the host
    CONFIGURATION = "configuration"  # enabled set, dependencies, conflicts, ordering
    COMMAND = "command"  # an external command (hook) failed


class StrataError(Exception):
    """A failure with a one-line message naming what was wrong and where, and an optional hint."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        kind: ErrorKind = ErrorKind.SYSTEM,
        errno: int | None = None,
        subject: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.kind = kind
        self.errno = errno
        #: what the error is about, for typed errors: the extension name (NOT_FOUND), the
        #: command (COMMAND)
        self.subject = subject

    def __str__(self) -> str:
        return self.message

    @classmethod
    def from_os(cls, exc: OSError, what: str, *, hint: str | None = None) -> StrataError:
        """Wrap an OSError: "<what>: <strerror>", kind derived from errno."""
        code = exc.errno or 0
        kind = {
            _errno.ENOENT: ErrorKind.NOT_FOUND,
            _errno.EBUSY: ErrorKind.BUSY,
            _errno.EPERM: ErrorKind.PERMISSION,
            _errno.EACCES: ErrorKind.PERMISSION,
            _errno.ENOSYS: ErrorKind.UNSUPPORTED,
            _errno.EOPNOTSUPP: ErrorKind.UNSUPPORTED,
        }.get(code, ErrorKind.SYSTEM)
        reason = exc.strerror or _errno.errorcode.get(code, str(exc))
        return cls(f"{what}: {reason}", hint=hint, kind=kind, errno=code or None)
