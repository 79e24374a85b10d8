"""One error root for every service; the CLI maps these to exit codes in one place.

Every message says what went wrong; the hint says what to do next. Both are kept to one line
so that CI logs and terminals show the whole story without a traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The documented exit codes (README, "Exit codes")."""

    OK = 0
    ERROR = 1
    USAGE = 2
    INVALID_SPEC = 3
    CHECK_FAILED = 4
    UNREACHABLE = 5
    NOT_FOUND = 6
    CONFLICT = 7
    INTERRUPTED = 130


class MlopsError(Exception):
    """Base of every error a service raises on purpose."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message.replace("\n", " ").strip()
        if self.hint:
            text = f"{text}; {self.hint.replace(chr(10), ' ').strip()}"
        return text

    def __str__(self) -> str:
        return self.one_line()


class UsageError(MlopsError):
    """The command line itself is wrong (bad option value, missing argument)."""

    exit_code = ExitCode.USAGE


class ConfigError(MlopsError):
    """mlops.yaml is missing or cannot be used."""

    exit_code = ExitCode.ERROR


class SpecError(MlopsError):
    """One or more specs are invalid. `diagnostics` holds every problem found."""

    exit_code = ExitCode.INVALID_SPEC

    def __init__(self, diagnostics: list[Diagnostic], hint: str | None = None) -> None:
        self.diagnostics = diagnostics
        count = len(diagnostics)
        first = diagnostics[0].render() if diagnostics else "invalid spec"
        message = first if count == 1 else f"{first} (and {count - 1} more)"
        super().__init__(message, hint)


class CheckFailed(MlopsError):
    """A gate, drift test or check ran and failed."""

    exit_code = ExitCode.CHECK_FAILED


class StoreError(MlopsError):
    """A store operation failed for a reason other than the ones below."""

    exit_code = ExitCode.ERROR


class StoreUnreachable(StoreError):
    """The endpoint cannot be reached, or the store refused us (credentials, missing bucket)."""

    exit_code = ExitCode.UNREACHABLE


class StoreUnauthorized(StoreUnreachable):
    pass


class BucketMissing(StoreUnreachable):
    pass


class StoreUnsafe(StoreUnreachable):
    """The store failed the capability probe: it would not honour conditional writes."""


class NotFound(MlopsError):
    exit_code = ExitCode.NOT_FOUND


class AlreadyExists(MlopsError):
    """put_if_absent found the key taken."""

    exit_code = ExitCode.CONFLICT


class Conflict(MlopsError):
    """A compare-and-swap lost: the object changed since it was read."""

    exit_code = ExitCode.CONFLICT


class IntegrityError(StoreError):
    """Stored bytes do not match their recorded sha256."""

    exit_code = ExitCode.ERROR


class EngineUnreachable(MlopsError):
    """A Docker engine cannot be reached (not running, wrong URL, no permission)."""

    exit_code = ExitCode.UNREACHABLE


class RegistryUnreachable(MlopsError):
    """The image registry cannot be reached, or refused a push or pull (credentials)."""

    exit_code = ExitCode.UNREACHABLE


class BuildFailed(MlopsError):
    """An image build failed; `tail` holds the last lines of the failing build step."""

    exit_code = ExitCode.ERROR

    def __init__(self, message: str, hint: str | None = None, tail: list[str] | None = None):
        super().__init__(message, hint)
        self.tail = list(tail or [])


class Diagnostic:
    """One problem in one spec file, rendered as ``file:line:column: message``."""

    __slots__ = ("column", "line", "message", "path")

    def __init__(self, path: str, line: int, column: int, message: str) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.message = message

    def render(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.path,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        }

    def __repr__(self) -> str:
        return f"Diagnostic({self.render()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Diagnostic) and self.render() == other.render()

    def __hash__(self) -> int:
        return hash(self.render())
