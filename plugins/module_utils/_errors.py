# Copyright: contributors to ovirt.node_plugins
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error type of the library: modules and the CLI turn it into a message for the user."""

from __future__ import annotations

# How much of an input a message may quote.
QUOTE_LIMIT = 120


def quote(text: object, limit: int = 2 * QUOTE_LIMIT) -> str:
    """Text from outside (hostile input, tools' messages) fit for a message: non-printable characters
    escaped, at most ``limit`` characters shown, and how many more there were."""
    value = str(text)
    shown = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in value[:limit])
    return shown + (f"... ({len(value) - limit} more characters)" if len(value) > limit else "")


def excerpt(text: object, limit: int = QUOTE_LIMIT) -> str:
    """``quote`` in single quotes, for a line or a word of an input."""
    return f"'{quote(text, limit)}'"


class NodePluginError(Exception):
    """A failure the user can act on: what went wrong, where, and what to do about it."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None,
                 details: str | None = None) -> None:
        self.message = message
        self.path = path
        self.hint = hint
        self.details = details
        super().__init__(self.render())

    def render(self) -> str:
        """One message: the problem, the file it concerns, then what to do."""
        text = self.message
        if self.path:
            text = f"{self.path}: {text}"
        if self.hint:
            text = f"{text} ({self.hint})"
        if self.details:
            text = f"{text}\n{self.details}"
        return text
