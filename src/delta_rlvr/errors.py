"""The errors a user can cause, in one module at the bottom of the package.

Every one of them carries a message that names the file, field or value and says what to do;
the command line (`delta_rlvr.cli.main`) prints it and exits with status 2, no traceback.
Each is also importable from the module that raises it (`delta_rlvr.train.ConfigError`, ...).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad configuration value; the message names the field and the fix."""


class DataError(ValueError):
    """Bad input data; names the file, the line (1-based; 0 for the whole file) and the field."""

    def __init__(self, path: str, line: int, field_name: str | None, message: str) -> None:
        self.path, self.line, self.field = path, line, field_name
        where = f"{path}:{line}" if line else path
        about = f" field {field_name!r}" if field_name else ""
        super().__init__(f"{where}{about}: {message}")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or none could be read; the message says what is intact."""


class SandboxUnavailable(RuntimeError):
    """The isolation asked for cannot be provided on this machine; the message says what to do."""
