"""Rendering service templates: Jinja2 lives only here, in its sandbox.

``{{ var }}`` placeholders get the values of the template's *public* variables; a secret
variable (``meshagent.secret.id``) is absent from the context, and ``StrictUndefined``
turns a reference to it (or to any unknown name) into an error naming it. Each value is
escaped as the inside of a JSON/YAML double-quoted string, so a value placed in
``"{{ var }}"`` cannot end the string and add fields to the spec.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from roomsvc.domain.service_spec import SpecError


def _escape(value: Any) -> str:
    return json.dumps("" if value is None else str(value))[1:-1]


_ENV = SandboxedEnvironment(undefined=StrictUndefined, finalize=_escape, autoescape=False, keep_trailing_newline=True)


def render_template(text: str, values: Mapping[str, str]) -> str:
    """Render ``text`` with ``values``.

    Raises:
        SpecError: ``template``: a placeholder names a secret or unknown variable, or the
            text is not a valid template (the message never quotes a value).
    """
    try:
        return _ENV.from_string(text).render(dict(values))
    except UndefinedError as exc:
        raise SpecError("template", f"{exc.message}: only non-secret variables may be interpolated "
                                    "(a secret variable reaches the service through environment[].secret)") from None
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise SpecError("template", f"not a valid template{f' (line {line})' if line else ''}") from None
