"""Server-provided text made safe for the operator's terminal.

Participant names, attributes, messages, audit lines and error messages come from other
people. Printed as they are, a control character in them (an ANSI escape, a carriage
return, a bidirectional override) could recolour, hide or rewrite what the operator
sees. :func:`printable` shows every such character as a visible escape instead.
"""

from __future__ import annotations


def printable(value: object) -> str:
    """``value`` as text with every non-printable character escaped (``\\x1b``, ``\\r``, ``\\u202e``)."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
