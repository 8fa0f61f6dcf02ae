"""One error base for everything the tool reports to the user: where (file:line), what, and a hint."""

from __future__ import annotations


class MailpreflightError(Exception):
    """An error the admin can act on. str() gives the one-line form `file:line: message`."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.hint = hint

    @property
    def where(self) -> str:
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.file else self.message
        return f"{text} ({self.hint})" if self.hint else text


class UnitNotFoundError(MailpreflightError):
    """No fragment for the unit anywhere in the search path."""


class UnitSyntaxError(MailpreflightError):
    """A unit or environment file systemd itself would refuse to load."""
