"""From parsed ``.x`` definitions to a typed Python module (private).

``unixipc rpcgen`` writes the module; :func:`unixipc.oncrpc.load` runs the
same text in a fresh module object, so both give exactly the same classes.

What a ``.x`` file becomes:

- ``const N = 5;`` -> ``N = 5``; enum members also become module constants, as in C.
- ``enum color {...}`` -> ``class color(enum.IntEnum)``.
- ``struct pair {...}`` -> a dataclass ``pair(xdr.Struct)`` with the fields in order.
- ``union result switch (int status) {...}`` -> a dataclass ``result(xdr.Union)``
  with two fields, ``status`` and ``value`` (the selected arm's value), and a
  read-only property per named arm.
- ``typedef ... name;`` -> ``name``, an ``xdr.Type`` (or the class, for a
  plain alias of a struct, union or enum).
- ``program P { version V { int ADD(pair) = 1; } = 1; } = 0x20000001;`` ->
  constants ``P``, ``V``, ``ADD``; ``V_Client`` (``oncrpc.Client`` with a method
  ``add(arg)``), ``V_Service`` (the server base class: override ``add(self, arg,
  call)``), and ``V_AsyncClient``/``V_AsyncService`` for asyncio.

Names that are Python keywords get a trailing underscore, and so do
procedure methods that would hide a method of the base class.
"""

from __future__ import annotations

import keyword
import linecache
import sys
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._xfile import (
    Const,
    Declaration,
    Definition,
    EnumDef,
    ProgramDef,
    StructDef,
    Typedef,
    TypeSpec,
    UnionDef,
    Value,
    XFileError,
    parse,
)

_BUILTIN_TYPES = {
    "int": ("_xdr.INT", "int"),
    "unsigned int": ("_xdr.UNSIGNED", "int"),
    "hyper": ("_xdr.HYPER", "int"),
    "unsigned hyper": ("_xdr.UNSIGNED_HYPER", "int"),
    "float": ("_xdr.FLOAT", "float"),
    "double": ("_xdr.DOUBLE", "float"),
    "bool": ("_xdr.BOOL", "bool"),
    "void": ("_xdr.VOID", "None"),
    "string": ("_xdr.String()", "str"),
}
_CLIENT_RESERVED = {
    "auth", "call", "close", "closed", "describe", "fileno", "host", "kind", "max_message_size",
    "null", "port", "program", "protocol", "retransmit", "timeout", "version", "open",
}  # fmt: skip
_SERVICE_RESERVED = {"program", "version", "procedures"}
# One name per procedure on both sides: the client's and the service's reserved names.
_RESERVED = _CLIENT_RESERVED | _SERVICE_RESERVED


def python_name(name: str) -> str:
    """A .x identifier as a Python name (keywords get a trailing underscore)."""
    return f"{name}_" if keyword.iskeyword(name) or name in ("None", "True", "False") else name


class _Generator:
    def __init__(self, definitions: list[Definition], filename: str) -> None:
        self.filename = filename
        self.definitions = definitions
        self.constants: dict[str, int] = {"TRUE": 1, "FALSE": 0}
        self.kinds: dict[str, Definition] = {}  # type name -> its definition
        self.globals: dict[str, int] = {}  # module-level name -> line, to catch clashes
        self.lines: list[str] = []

    def error(self, line: int, message: str) -> XFileError:
        return XFileError(f"{self.filename}:{line}: {message}")

    def claim(self, name: str, line: int) -> str:
        python = python_name(name)
        if python in self.globals:
            raise self.error(
                line, f"{name!r} is defined twice (first at line {self.globals[python]})"
            )
        self.globals[python] = line
        return python

    # Values and types

    def value(self, value: Value, line: int) -> int:
        if isinstance(value, int):
            return value
        if value not in self.constants:
            raise self.error(line, f"unknown constant {value!r}")
        return self.constants[value]

    def size(self, declaration: Declaration) -> int | None:
        if declaration.size is None:
            return None
        size = self.value(declaration.size, declaration.line)
        if not 0 <= size <= 0xFFFFFFFF:
            raise self.error(declaration.line, f"size {size} is not between 0 and 2**32 - 1")
        return size

    def named(self, spec: TypeSpec) -> tuple[str, str]:
        """(XDR type expression, Python annotation) of a named or built-in type."""
        if spec.builtin:
            if spec.name == "quadruple":
                raise self.error(spec.line, "quadruple has no Python type and is not supported")
            return _BUILTIN_TYPES[spec.name]
        definition = self.kinds.get(spec.name)
        if definition is None:
            raise self.error(spec.line, f"unknown type {spec.name!r}")
        name = python_name(spec.name)
        if isinstance(definition, Typedef):
            return name, self.annotation_of_typedef(definition)
        return name, name

    def annotation_of_typedef(self, definition: Typedef) -> str:
        return self.declared(definition.declaration)[1]

    def declared(self, declaration: Declaration) -> tuple[str, str]:
        """(XDR type expression, Python annotation) of a declaration's type."""
        spec, kind = declaration.type, declaration.kind
        if kind == "void":
            return "_xdr.VOID", "None"
        if spec.builtin and spec.name in ("opaque", "string"):
            size = self.size(declaration)
            if spec.name == "opaque":
                if kind == "fixed":
                    return f"_xdr.FixedOpaque({size})", "bytes"
                return f"_xdr.Opaque({size})", "bytes"
            return f"_xdr.String({size})", "str"
        element, annotation = self.named(spec)
        if spec.builtin and spec.name == "void":
            raise self.error(declaration.line, "void cannot be declared with a name")
        if kind == "plain":
            return element, annotation
        if kind == "optional":
            return f"_xdr.Optional({element})", f"{annotation} | None"
        if kind == "fixed":
            return f"_xdr.FixedArray({element}, {self.size(declaration)})", f"list[{annotation}]"
        return f"_xdr.Array({element}, {self.size(declaration)})", f"list[{annotation}]"

    # The module

    def generate(self) -> str:
        self.collect()
        out = self.lines
        out += [
            f'"""Sun RPC types and stubs for {Path(self.filename).name}',
            "",
            "Generated by unixipc rpcgen; edit the .x file instead.",
            '"""',
            "",
            "# ruff: noqa",
            "from __future__ import annotations",
            "",
            "import dataclasses as _dataclasses",
            "import enum as _enum",
            "import typing as _typing",
            "",
            "from unixipc import oncrpc as _oncrpc",
            "from unixipc.oncrpc import aio as _aio",
            "from unixipc.oncrpc import xdr as _xdr",
            "",
        ]
        self.emit_constants_and_enums()
        self.emit_classes()
        self.emit_typedefs()
        self.emit_definitions()
        for definition in self.definitions:
            if isinstance(definition, ProgramDef):
                self.emit_program(definition)
        return "\n".join(out) + "\n"

    def collect(self) -> None:
        """Constants and type names first: a .x file may use them before defining them."""
        for definition in self.definitions:
            if isinstance(definition, Const):
                self.claim(definition.name, definition.line)
            elif isinstance(definition, (EnumDef, StructDef, UnionDef, Typedef)):
                if definition.name in self.kinds:
                    raise self.error(definition.line, f"type {definition.name!r} is defined twice")
                self.claim(definition.name, definition.line)
                self.kinds[definition.name] = definition
        # Constants may refer to each other and to enum members: resolve until stable.
        pending: list[tuple[str, Any, int]] = []
        for definition in self.definitions:
            if isinstance(definition, Const):
                pending.append((definition.name, definition.value, definition.line))
            elif isinstance(definition, EnumDef):
                previous: Value | None = None
                for member, value in definition.members:
                    self.claim(member, definition.line)
                    if value is None:
                        value = 0 if previous is None else ("+1", previous)  # type: ignore[assignment]
                    pending.append((member, value, definition.line))
                    previous = member
        while pending:
            left = []
            for name, value, line in pending:
                resolved = self.try_value(value)
                if resolved is None:
                    left.append((name, value, line))
                else:
                    self.constants[name] = resolved
            if len(left) == len(pending):
                name, value, line = left[0]
                raise self.error(line, f"cannot resolve the value of {name!r} ({value!r})")
            pending = left

    def try_value(self, value: Any) -> int | None:
        if isinstance(value, tuple):  # enum member without a value: the previous + 1
            previous = self.constants.get(value[1])
            return None if previous is None else previous + 1
        if isinstance(value, int):
            return value
        return self.constants.get(value)

    def emit_constants_and_enums(self) -> None:
        out = self.lines
        for definition in self.definitions:
            if isinstance(definition, Const):
                value = self.constants[definition.name]
                out.append(f"{python_name(definition.name)}: _typing.Final = {value}")
        out.append("")
        for definition in self.definitions:
            if not isinstance(definition, EnumDef):
                continue
            name = python_name(definition.name)
            out += ["", f"class {name}(_enum.IntEnum):", f'    """enum {definition.name}"""', ""]
            for member, _ in definition.members:
                value = self.constants[member]
                if not -(2**31) <= value < 2**31:
                    raise self.error(definition.line, f"{member} = {value} does not fit in 32 bits")
                out.append(f"    {python_name(member)} = {value}")
            out.append("")
            out.append("")
            for member, _ in definition.members:
                out.append(f"{python_name(member)}: _typing.Final = {name}.{python_name(member)}")
        out.append("")

    def emit_classes(self) -> None:
        out = self.lines
        for definition in self.definitions:
            if isinstance(definition, StructDef):
                name = python_name(definition.name)
                out += ["", "@_dataclasses.dataclass(slots=True)", f"class {name}(_xdr.Struct):"]
                out += [f'    """struct {definition.name}"""', ""]
                seen: set[str] = set()
                for field in definition.fields:
                    field_name = python_name(field.name)
                    if field_name in seen:
                        raise self.error(field.line, f"field {field.name!r} appears twice")
                    seen.add(field_name)
                    out.append(f"    {field_name}: {self.declared(field)[1]}")
                out.append("")
            elif isinstance(definition, UnionDef):
                self.emit_union_class(definition)

    def emit_union_class(self, definition: UnionDef) -> None:
        out = self.lines
        name = python_name(definition.name)
        discriminant = python_name(definition.discriminant.name)
        value_name = "value_" if discriminant == "value" else "value"
        arms = [declaration for _, declaration in definition.cases]
        if definition.default is not None:
            arms.append(definition.default)
        annotations = list(dict.fromkeys(self.declared(arm)[1] for arm in arms))
        if "None" not in annotations:
            annotations.append("None")
        out += ["", "@_dataclasses.dataclass(slots=True)", f"class {name}(_xdr.Union):"]
        out += [f'    """union {definition.name}: ``{value_name}`` holds the selected arm"""', ""]
        out.append(f"    {discriminant}: {self.declared(definition.discriminant)[1]}")
        out.append(f"    {value_name}: {' | '.join(annotations)} = None")
        by_name: dict[str, str] = {}
        for arm in arms:
            if arm.kind == "void" or not arm.name:
                continue
            arm_name = python_name(arm.name)
            annotation = self.declared(arm)[1]
            if (
                arm_name in (discriminant, value_name)
                or by_name.get(arm_name, annotation) != annotation
            ):
                continue
            by_name[arm_name] = annotation
        for arm_name, annotation in by_name.items():
            out += [
                "",
                "    @property",
                f"    def {arm_name}(self) -> {annotation}:",
                f'        """The arm {arm_name!r} (AttributeError when another is selected)."""',
                f"        _arm_value: {annotation} = self._arm({arm_name!r})",
                "        return _arm_value",
            ]
        out.append("")

    def emit_typedefs(self) -> None:
        """Typedefs in dependency order (a typedef may use one defined later in the file)."""
        typedefs = {d.name: d for d in self.definitions if isinstance(d, Typedef)}
        done: set[str] = set()
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in done:
                return
            definition = typedefs[name]
            if name in visiting:
                raise self.error(definition.line, f"typedef {name!r} refers to itself")
            visiting.add(name)
            target = definition.declaration.type
            if not target.builtin and target.name in typedefs:
                visit(target.name)
            visiting.discard(name)
            done.add(name)
            self.emit_typedef(definition)

        self.lines.append("")
        for name in typedefs:
            visit(name)
        self.lines.append("")

    def emit_typedef(self, definition: Typedef) -> None:
        declaration = definition.declaration
        name = python_name(definition.name)
        expression, annotation = self.declared(declaration)
        target = self.kinds.get(declaration.type.name) if not declaration.type.builtin else None
        if declaration.kind == "plain" and isinstance(target, (StructDef, UnionDef, EnumDef)):
            self.lines.append(f"{name} = {expression}")  # an alias of the class
        else:
            self.lines.append(f"{name}: _xdr.Type[{annotation}] = {expression}")

    def emit_definitions(self) -> None:
        out = self.lines
        for definition in self.definitions:
            if isinstance(definition, StructDef):
                fields = ", ".join(
                    f"({python_name(f.name)!r}, {self.declared(f)[0]})" for f in definition.fields
                )
                out.append(f"_xdr.define_struct({python_name(definition.name)}, [{fields}])")
            elif isinstance(definition, UnionDef):
                out.append(self.union_definition(definition))
        out.append("")

    def union_definition(self, definition: UnionDef) -> str:
        discriminant = definition.discriminant
        discriminant_type = self.declared(discriminant)[0]
        seen: dict[int, int] = {}
        arms = []
        for values, declaration in definition.cases:
            arm = self.arm(declaration)
            for value in values:
                number = self.value(value, declaration.line)
                if number in seen:
                    raise self.error(declaration.line, f"case {value!r} appears twice")
                seen[number] = declaration.line
                arms.append(f"{number}: {arm}")
        default = "None" if definition.default is None else self.arm(definition.default)
        return (
            f"_xdr.define_union({python_name(definition.name)}, "
            f"({python_name(discriminant.name)!r}, {discriminant_type}), "
            f"{{{', '.join(arms)}}}, {default})"
        )

    def arm(self, declaration: Declaration) -> str:
        if declaration.kind == "void":
            return "(None, _xdr.VOID)"
        return f"({python_name(declaration.name)!r}, {self.declared(declaration)[0]})"

    # Programs

    def procedure_type(self, spec: TypeSpec) -> tuple[str, str]:
        expression, annotation = self.named(spec)
        definition = self.kinds.get(spec.name) if not spec.builtin else None
        if isinstance(definition, (StructDef, UnionDef)):
            expression = f"{python_name(spec.name)}.xdr_type"
        elif isinstance(definition, EnumDef):
            expression = f"_xdr.as_type({python_name(spec.name)})"
        elif isinstance(definition, Typedef):
            target = definition.declaration
            target_definition = (
                self.kinds.get(target.type.name) if not target.type.builtin else None
            )
            if target.kind == "plain" and isinstance(
                target_definition, (StructDef, UnionDef, EnumDef)
            ):
                expression = f"_xdr.as_type({python_name(spec.name)})"
        return expression, annotation

    def emit_program(self, program: ProgramDef) -> None:
        out = self.lines
        program_number = self.value(program.number, program.line)
        out.append(f"{self.claim(program.name, program.line)}: _typing.Final = {program_number}")
        procedure_numbers: dict[str, int] = {}
        for version in program.versions:
            version_number = self.value(version.number, version.line)
            out.append(
                f"{self.claim(version.name, version.line)}: _typing.Final = {version_number}"
            )
            for procedure in version.procedures:
                number = self.value(procedure.number, procedure.line)
                if procedure.name in procedure_numbers:
                    if procedure_numbers[procedure.name] != number:
                        raise self.error(procedure.line, f"{procedure.name} has two numbers")
                    continue
                procedure_numbers[procedure.name] = number
                out.append(
                    f"{self.claim(procedure.name, procedure.line)}: _typing.Final = {number}"
                )
        for version in program.versions:
            self.emit_version(program, program_number, version)

    def emit_version(self, program: ProgramDef, program_number: int, version: Any) -> None:
        out = self.lines
        version_number = self.value(version.number, version.line)
        prefix = python_name(version.name)
        procedures = []
        numbers: set[int] = set()
        for procedure in version.procedures:
            number = self.value(procedure.number, procedure.line)
            if number in numbers:
                raise self.error(procedure.line, f"procedure number {number} appears twice")
            numbers.add(number)
            arguments = [self.procedure_type(a) for a in procedure.arguments]
            result = self.procedure_type(procedure.result)
            procedures.append((procedure, number, arguments, result))
        # Shared tuples of argument types, one per procedure.
        for _, number, arguments, result in procedures:
            types_ = "".join(f"{expression}, " for expression, _ in arguments)
            out.append(f"_{prefix}_{number}_ARGUMENTS = ({types_})")
            out.append(f"_{prefix}_{number}_RESULT = {result[0]}")
        title = (
            f"program {program.name} ({program_number:#x}) "
            f"version {version.name} ({version_number})"
        )
        for asynchronous in (False, True):
            self.emit_client(
                prefix, title, program_number, version_number, procedures, asynchronous
            )
            self.emit_service(
                prefix, title, program_number, version_number, procedures, asynchronous
            )

    def method_names(self, procedures: Iterable[Any], reserved: set[str]) -> list[str]:
        names: list[str] = []
        for procedure, *_ in procedures:
            name = python_name(procedure.name.lower())
            while name in reserved or name.startswith("_"):
                name += "_"
            if name in names:
                raise self.error(procedure.line, f"two procedures are named {name!r} in Python")
            names.append(name)
        return names

    def emit_client(
        self,
        prefix: str,
        title: str,
        program_number: int,
        version_number: int,
        procedures: list[Any],
        asynchronous: bool,
    ) -> None:
        out = self.lines
        base = "_aio.AsyncClient" if asynchronous else "_oncrpc.Client"
        name = f"{prefix}_{'Async' if asynchronous else ''}Client"
        out += ["", "", f"class {name}({base}):", f'    """Client of {title}."""', ""]
        out += [f"    program = {program_number}", f"    version = {version_number}"]
        awaiting = "await " if asynchronous else ""
        for method, (procedure, number, arguments, result) in zip(
            self.method_names(procedures, _RESERVED), procedures, strict=True
        ):
            parameters = self.parameters(arguments)
            values = "".join(f"{p}, " for p in self.parameter_names(arguments))
            signature = (
                f"(self{''.join(f', {p}' for p in parameters)}{', /' if parameters else ''})"
            )
            out += [
                "",
                f"    {'async ' if asynchronous else ''}def {method}{signature} -> {result[1]}:",
                f'        """{procedure.name} (procedure {number})."""',
                f"        _returned: {result[1]} = {awaiting}self._call_typed(",
                f"            {number}, _{prefix}_{number}_ARGUMENTS, ({values}), "
                f"_{prefix}_{number}_RESULT",
                "        )",
                "        return _returned",
            ]

    def emit_service(
        self,
        prefix: str,
        title: str,
        program_number: int,
        version_number: int,
        procedures: list[Any],
        asynchronous: bool,
    ) -> None:
        out = self.lines
        base = "_aio.AsyncService" if asynchronous else "_oncrpc.Service"
        name = f"{prefix}_{'Async' if asynchronous else ''}Service"
        out += ["", "", f"class {name}({base}):"]
        out += [f'    """Server base class of {title}: override the methods."""', ""]
        out += [f"    program = {program_number}", f"    version = {version_number}"]
        methods = self.method_names(procedures, _RESERVED)
        defining = "async " if asynchronous else ""
        entries = ", ".join(
            f"{number}: _oncrpc.Procedure({method!r}, _{prefix}_{number}_ARGUMENTS, "
            f"_{prefix}_{number}_RESULT)"
            for method, (_, number, _, _) in zip(methods, procedures, strict=True)
        )
        out.append(f"    procedures = {{{entries}}}")
        for method, (procedure, number, arguments, result) in zip(methods, procedures, strict=True):
            parameters = ", ".join([*self.parameters(arguments), "call: _oncrpc.CallInfo", "/"])
            out += [
                "",
                f"    {defining}def {method}(self, {parameters}) -> {result[1]}:",
                f'        """{procedure.name} (procedure {number}): override to serve it."""',
                "        raise NotImplementedError",
            ]

    @staticmethod
    def parameter_names(arguments: list[tuple[str, str]]) -> list[str]:
        if len(arguments) == 1:
            return ["arg"]
        return [f"arg{index}" for index in range(1, len(arguments) + 1)]

    def parameters(self, arguments: list[tuple[str, str]]) -> list[str]:
        return [
            f"{name}: {annotation}"
            for name, (_, annotation) in zip(
                self.parameter_names(arguments), arguments, strict=True
            )
        ]


def generate(source: str, filename: str = "<string>") -> str:
    """The Python module for the RPC language in ``source``.

    Raises:
        XFileError: the source is not valid (the message names the line).
    """
    return _Generator(parse(source, filename), filename).generate()


def load(path: str | Path) -> types.ModuleType:
    """Parse a ``.x`` file and return a module with its types, a client class and a
    service (server base) class per program version (see :mod:`unixipc.oncrpc`).

    Raises:
        XFileError: the file is not valid RPC language (the message names the line).
        OSError: the file cannot be read.
    """
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or Path, not {type(path).__name__}")
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    source = generate(text, str(path))
    stem = "".join(c if c.isalnum() else "_" for c in path.stem) or "x"
    module = types.ModuleType(f"{stem}_rpc", f"Sun RPC definitions loaded from {path}")
    filename = f"<oncrpc {path}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module.__file__ = filename
    # dataclasses looks the module up while it decorates the classes: lend it a
    # place in sys.modules for that time only.
    previous = sys.modules.get(module.__name__)
    sys.modules[module.__name__] = module
    try:
        exec(compile(source, filename, "exec"), module.__dict__)
    finally:
        if previous is None:
            del sys.modules[module.__name__]
        else:
            sys.modules[module.__name__] = previous
    return module
