"""Service templates: ``kind: ServiceTemplate`` with ``variables``, installed into a room.

A template is a service spec whose text holds ``{{ variable }}`` placeholders, plus the
variables a person fills in (``name``, ``title``, ``description``, ``obscure``, ``enum``,
``optional``, ``type``, ``annotations``). A variable annotated ``meshagent.secret.id``
is a *secret variable*: at install its value is stored as a room secret for the identity
``meshagent.secret.identity`` names (with ``.name`` and ``.type`` as its metadata), and
it is never rendered into the spec: a template that interpolates one is refused. The
service reads it back through ``environment[].secret: {identity, id}``.

Install order: everything is checked (values, rendering, the resulting spec) before the
first secret is written, so a bad template leaves nothing behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from roomsvc.domain.principal import Principal
from roomsvc.domain.secrets import SecretService
from roomsvc.domain.service_catalog import DocumentLoader, ServiceCatalog, ServiceRecord
from roomsvc.domain.service_spec import SpecError, parse_service_spec
from roomsvc.ids import Identity, RoomName, parse_identity, parse_secret_id

SECRET_ID = "meshagent.secret.id"
SECRET_IDENTITY = "meshagent.secret.identity"
SECRET_NAME = "meshagent.secret.name"
SECRET_TYPE = "meshagent.secret.type"
TYPES = ("string", "email", "route")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_VARIABLES = 64
MAX_VALUE = 65536

#: renders template text with values (a sandboxed engine); raises SpecError("template", ...)
TemplateRenderer = Callable[[str, Mapping[str, str]], str]


@dataclass(frozen=True)
class Variable:
    name: str
    title: str = ""
    description: str = ""
    obscure: bool = False
    enum: tuple[str, ...] = ()
    optional: bool = False
    type: str = "string"
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def secret_id(self) -> str | None:
        return self.annotations.get(SECRET_ID)

    @property
    def secret_identity(self) -> str | None:
        return self.annotations.get(SECRET_IDENTITY)


@dataclass(frozen=True)
class Template:
    name: str
    variables: tuple[Variable, ...]

    @property
    def secret_names(self) -> frozenset[str]:
        return frozenset(v.name for v in self.variables if v.secret_id is not None)


def parse_template(doc: object) -> Template:
    """The variables of a loaded template document (its spec is checked after rendering).

    Raises:
        SpecError: naming the field, e.g. ``variables[0].annotations.meshagent.secret.identity``.
    """
    if not isinstance(doc, Mapping):
        raise SpecError("template", "must be a mapping")
    if doc.get("kind") != "ServiceTemplate":
        raise SpecError("kind", "must be 'ServiceTemplate'")
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise SpecError("metadata.name", "required")
    raw = doc.get("variables", [])
    if not isinstance(raw, list) or len(raw) > MAX_VARIABLES:
        raise SpecError("variables", f"must be a list of at most {MAX_VARIABLES} variables")
    variables = tuple(_variable(item, f"variables[{i}]") for i, item in enumerate(raw))
    seen: set[str] = set()
    for i, v in enumerate(variables):
        if v.name in seen:
            raise SpecError(f"variables[{i}].name", f"{v.name!r} appears twice")
        seen.add(v.name)
    return Template(name=name, variables=variables)


def _variable(doc: object, path: str) -> Variable:
    if not isinstance(doc, Mapping):
        raise SpecError(path, "must be a mapping")
    for key in doc:
        if key not in {"name", "title", "description", "obscure", "enum", "optional", "type", "annotations"}:
            raise SpecError(f"{path}.{key if isinstance(key, str) and key.isprintable() else '?'}", "unknown field")
    name = doc.get("name")
    if not isinstance(name, str) or not _VAR_NAME.fullmatch(name):
        raise SpecError(f"{path}.name", "required: a name of letters, digits and '_'")
    text = {k: doc.get(k) or "" for k in ("title", "description")}
    for key, value in text.items():
        if not isinstance(value, str):
            raise SpecError(f"{path}.{key}", "must be a string")
    flags = {k: doc.get(k, False) for k in ("obscure", "optional")}
    for key, flag in flags.items():
        if not isinstance(flag, bool):
            raise SpecError(f"{path}.{key}", "must be true or false")
    enum = doc.get("enum") or []
    if not isinstance(enum, list) or not all(isinstance(e, str) for e in enum):
        raise SpecError(f"{path}.enum", "must be a list of strings")
    kind = doc.get("type") or "string"
    if kind not in TYPES:
        raise SpecError(f"{path}.type", f"must be one of {', '.join(TYPES)}")
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
        raise SpecError(f"{path}.annotations", "must map names to strings")
    if SECRET_ID in annotations:
        _check_secret_annotations(annotations, f"{path}.annotations")
    return Variable(name=name, title=text["title"], description=text["description"], obscure=flags["obscure"],
                    enum=tuple(enum), optional=flags["optional"], type=kind, annotations=MappingProxyType(dict(annotations)))


def _check_secret_annotations(annotations: Mapping[str, str], path: str) -> None:
    if not annotations.get(SECRET_IDENTITY):
        raise SpecError(f"{path}.{SECRET_IDENTITY}", "required: the identity the secret is stored for")
    for key, check in ((SECRET_ID, parse_secret_id), (SECRET_IDENTITY, parse_identity)):
        try:
            check(annotations[key])
        except Exception as exc:  # noqa: BLE001 - InvalidRequest: re-raised with the path
            raise SpecError(f"{path}.{key}", getattr(exc, "message", "invalid")) from None


def check_values(template: Template, values: Mapping[str, str]) -> dict[str, str]:
    """The value of every variable (optional ones may be missing: empty).

    Raises:
        SpecError: a value is missing, not one of the enum, not an email; or a value names
            no variable. Messages name the variable, never the value.
        """
    known = {v.name for v in template.variables}
    for name in values:
        if name not in known:
            raise SpecError(f"values.{name if _VAR_NAME.fullmatch(name) else '?'}", "the template has no such variable")
    out: dict[str, str] = {}
    for i, v in enumerate(template.variables):
        value = values.get(v.name)
        path = f"variables[{i}] ({v.name})"
        if value is None or value == "":
            if not v.optional:
                raise SpecError(path, "a value is required")
            value = ""
        if not isinstance(value, str) or len(value) > MAX_VALUE:
            raise SpecError(path, f"the value must be text of at most {MAX_VALUE} characters")
        if value and v.enum and value not in v.enum:
            raise SpecError(path, f"must be one of {', '.join(v.enum)}")
        if value and v.type == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+", value):
            raise SpecError(path, "must be an email address")
        out[v.name] = value
    return out


class ServiceInstaller:
    def __init__(self, *, catalog: ServiceCatalog, secrets: SecretService, load: DocumentLoader, render: TemplateRenderer) -> None:
        self._catalog = catalog
        self._secrets = secrets
        self._load = load
        self._render = render

    async def install(
        self, caller: Principal, room: str, text: str, values: Mapping[str, str], *, replace: bool = False
    ) -> ServiceRecord:
        """Store the secret variables as room secrets, render the rest, save the service.

        Raises:
            PermissionDenied: not an operator (audited). SpecError: naming what is wrong.
        """
        room_ = await self._catalog.authorize(caller, room, "*", "service_install")
        template = parse_template(self._load(text))
        checked = check_values(template, values)
        public = {k: v for k, v in checked.items() if k not in template.secret_names}
        rendered = self._load(self._render(text, public))
        if not isinstance(rendered, dict):
            raise SpecError("template", "does not render to a mapping")
        spec_doc: dict[str, Any] = {k: v for k, v in rendered.items() if k != "variables"}
        spec_doc["kind"] = "Service"
        spec = parse_service_spec(spec_doc)  # checked before any secret is stored
        for v in template.variables:
            if v.secret_id is not None and checked[v.name]:
                await self._store_secret(room_, spec.name, v, checked[v.name])
        return await self._catalog.create(caller, room_, spec_doc, replace=replace)

    async def _store_secret(self, room: str, service: str, v: Variable, value: str) -> None:
        assert v.secret_id is not None and v.secret_identity is not None
        owner = Principal(identity=Identity(v.secret_identity), room=RoomName(room), role="agent",
                          api=MappingProxyType({"secrets": {}}))
        await self._secrets.set(
            owner, room, secret_id=v.secret_id, value=value.encode(), type=v.annotations.get(SECRET_TYPE) or "text/plain",
            name=v.annotations.get(SECRET_NAME) or v.title or None, channel=f"install:{service}",
        )
