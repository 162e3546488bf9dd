"""YAML documents (service specs and templates): PyYAML lives only here.

``safe_load`` only: no tags that build Python objects. A document that does not parse is
a :class:`~roomsvc.domain.service_spec.SpecError` naming the line, never quoting it (a
spec may hold literals its author considers sensitive).
"""

from __future__ import annotations

import yaml

from roomsvc.domain.service_spec import SpecError

MAX_DOCUMENT = 262144


def load_document(text: str) -> object:
    """Parse one YAML (or JSON) document.

    Raises:
        SpecError: ``spec``: too large, or not YAML (with the line and column).
    """
    if len(text) > MAX_DOCUMENT:
        raise SpecError("spec", f"the document is larger than {MAX_DOCUMENT} characters")
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SpecError("spec", f"not valid YAML{where}: {(exc.problem or 'syntax error')[:120]}") from None
    except yaml.YAMLError:
        raise SpecError("spec", "not valid YAML") from None
