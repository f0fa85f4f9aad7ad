"""A parser for the RPC language of ``.x`` files (RFC 4506 section 6, RFC 5531
section 12, and what ``rpcgen`` accepts besides) (private).

The result is a list of definitions, with every number left as written (a
literal or a constant's name) for the code generator to resolve.

Accepted beyond the RFCs, as rpcgen does: ``//`` comments, lines starting
with ``%`` (C code for rpcgen) or ``#`` (preprocessor lines, which are not
run: ``#define`` has no effect), ``unsigned`` alone, ``long``, ``short`` and
``char`` (32-bit in XDR), ``u_int``/``u_long``/``u_short``/``u_char``, enum
members without a value (the previous one plus one), ``string`` as a
procedure's argument or result (no bound), procedures with several arguments
(``rpcgen -N``), and ``struct X``/``union X``/``enum X`` to name a type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Value = int | str  # a literal, or the name of a constant or enum member


class XFileError(ValueError):
    """A ``.x`` file is not valid RPC language; the message gives the line."""


@dataclass
class TypeSpec:
    """A type named in a declaration: a built-in (``int``, ``unsigned hyper``...) or
    the name of a defined type."""

    name: str
    builtin: bool
    line: int = 0


@dataclass
class Declaration:
    """``type name``, ``type name[n]``, ``type name<n>``, ``type *name``, ``void``,
    ``opaque``/``string`` forms. ``size`` is None for ``<>``."""

    name: str
    type: TypeSpec
    kind: str  # "plain", "fixed", "variable", "optional", "void"
    size: Value | None = None
    line: int = 0


@dataclass
class Const:
    name: str
    value: Value
    line: int = 0


@dataclass
class EnumDef:
    name: str
    members: list[tuple[str, Value | None]]
    line: int = 0


@dataclass
class StructDef:
    name: str
    fields: list[Declaration]
    line: int = 0


@dataclass
class UnionDef:
    name: str
    discriminant: Declaration
    cases: list[tuple[list[Value], Declaration]]
    default: Declaration | None
    line: int = 0


@dataclass
class Typedef:
    declaration: Declaration
    line: int = 0

    @property
    def name(self) -> str:
        return self.declaration.name


@dataclass
class ProcedureDef:
    name: str
    number: Value
    result: TypeSpec  # name "void" for none
    arguments: list[TypeSpec]  # empty for void
    line: int = 0


@dataclass
class VersionDef:
    name: str
    number: Value
    procedures: list[ProcedureDef] = field(default_factory=list)
    line: int = 0


@dataclass
class ProgramDef:
    name: str
    number: Value
    versions: list[VersionDef] = field(default_factory=list)
    line: int = 0


Definition = Const | EnumDef | StructDef | UnionDef | Typedef | ProgramDef

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\f\v]+)
  | (?P<newline>\n)
  | (?P<comment>/\*.*?\*/|//[^\n]*)
  | (?P<number>-?(?:0[xX][0-9a-fA-F]+|[0-9]+))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}\[\]<>();:,=*])
    """,
    re.VERBOSE | re.DOTALL,
)

# Built-in type names, with the words that make them up.
_SIMPLE = {"int", "hyper", "float", "double", "quadruple", "bool", "void"}
_ALIASES = {
    "long": "int",
    "short": "int",
    "char": "int",
    "u_int": "unsigned int",
    "u_long": "unsigned int",
    "u_short": "unsigned int",
    "u_char": "unsigned int",
    "bool_t": "bool",
}
_KEYWORDS = {
    "const", "typedef", "enum", "struct", "union", "switch", "case", "default",
    "program", "version", "void", "unsigned", "int", "hyper", "float", "double",
    "quadruple", "bool", "opaque", "string",
}  # fmt: skip


@dataclass
class _Token:
    kind: str
    text: str
    line: int


def _tokenize(source: str, filename: str) -> list[_Token]:
    tokens = []
    line = 1
    position = 0
    lines = source.split("\n")
    # Lines for rpcgen's C pass-through (%) and the preprocessor (#) are skipped.
    source = "\n".join("" if l.lstrip().startswith(("%", "#")) else l for l in lines)  # noqa: E741
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:
            raise XFileError(f"{filename}:{line}: unexpected character {source[position]!r}")
        kind = match.lastgroup
        text = match.group()
        assert kind is not None
        if kind in ("number", "name", "punct"):
            tokens.append(_Token(kind, text, line))
        line += text.count("\n")
        position = match.end()
    tokens.append(_Token("end", "end of file", line))
    return tokens


def parse_number(text: str) -> int:
    """A C integer literal: decimal, 0x hexadecimal, or 0 octal."""
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    elif len(digits) > 1 and digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits)
    return -value if negative else value


class _Parser:
    def __init__(self, source: str, filename: str) -> None:
        self.filename = filename
        self.tokens = _tokenize(source, filename)
        self.position = 0

    # Tokens

    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.position + offset, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.position += 1
        return token

    def error(self, message: str, token: _Token | None = None) -> XFileError:
        token = token or self.peek()
        return XFileError(f"{self.filename}:{token.line}: {message} (found {token.text!r})")

    def expect(self, text: str) -> _Token:
        token = self.take()
        if token.text != text:
            raise self.error(f"expected {text!r}", token)
        return token

    def accept(self, text: str) -> bool:
        if self.peek().text == text:
            self.position += 1
            return True
        return False

    def identifier(self, what: str = "a name") -> str:
        token = self.take()
        if token.kind != "name" or token.text in _KEYWORDS:
            raise self.error(f"expected {what}", token)
        return token.text

    def value(self) -> Value:
        token = self.take()
        if token.kind == "number":
            return parse_number(token.text)
        if token.kind == "name" and token.text not in _KEYWORDS:
            return token.text
        raise self.error("expected a number or a constant's name", token)

    # Definitions

    def specification(self) -> list[Definition]:
        definitions: list[Definition] = []
        while self.peek().kind != "end":
            definitions.append(self.definition())
        return definitions

    def definition(self) -> Definition:
        token = self.peek()
        line = token.line
        if self.accept("const"):
            name = self.identifier("a constant's name")
            self.expect("=")
            value = self.value()
            self.expect(";")
            return Const(name, value, line)
        if self.accept("typedef"):
            declaration = self.declaration()
            if declaration.kind == "void":
                raise self.error("typedef of void")
            self.expect(";")
            return Typedef(declaration, line)
        if self.accept("enum"):
            name = self.identifier("an enum's name")
            members = self.enum_body()
            self.expect(";")
            return EnumDef(name, members, line)
        if self.accept("struct"):
            name = self.identifier("a struct's name")
            fields = self.struct_body()
            self.expect(";")
            return StructDef(name, fields, line)
        if self.accept("union"):
            name = self.identifier("a union's name")
            union = self.union_body(name, line)
            self.expect(";")
            return union
        if self.accept("program"):
            return self.program(line)
        raise self.error("expected const, typedef, enum, struct, union or program")

    def enum_body(self) -> list[tuple[str, Value | None]]:
        self.expect("{")
        members: list[tuple[str, Value | None]] = []
        while True:
            name = self.identifier("an enum member")
            members.append((name, self.value() if self.accept("=") else None))
            if self.accept("}"):
                return members
            self.expect(",")

    def struct_body(self) -> list[Declaration]:
        self.expect("{")
        fields = []
        while not self.accept("}"):
            declaration = self.declaration()
            if declaration.kind == "void":
                raise self.error("a struct field cannot be void")
            fields.append(declaration)
            self.expect(";")
        if not fields:
            raise self.error("a struct needs at least one field")
        return fields

    def union_body(self, name: str, line: int) -> UnionDef:
        self.expect("switch")
        self.expect("(")
        discriminant = self.declaration()
        if discriminant.kind != "plain":
            raise self.error("a union's discriminant must be a plain int, unsigned, enum or bool")
        self.expect(")")
        self.expect("{")
        cases: list[tuple[list[Value], Declaration]] = []
        default = None
        while not self.accept("}"):
            if self.accept("default"):
                self.expect(":")
                default = self.declaration()
                self.expect(";")
                continue
            values = []
            self.expect("case")
            values.append(self.value())
            self.expect(":")
            while self.accept("case"):
                values.append(self.value())
                self.expect(":")
            cases.append((values, self.declaration()))
            self.expect(";")
        if not cases:
            raise self.error("a union needs at least one case")
        return UnionDef(name, discriminant, cases, default, line)

    def type_specifier(self) -> TypeSpec:
        token = self.take()
        text = token.text
        if text in ("struct", "union", "enum"):
            return TypeSpec(self.identifier(f"the {text}'s name"), False, token.line)
        if text == "unsigned":
            following = self.peek().text
            if following in ("int", "hyper"):
                self.take()
                return TypeSpec(f"unsigned {following}", True, token.line)
            if following in ("long", "short", "char"):
                self.take()
            return TypeSpec("unsigned int", True, token.line)
        if text in _SIMPLE:
            return TypeSpec(text, True, token.line)
        if text in _ALIASES:
            return TypeSpec(_ALIASES[text], True, token.line)
        if token.kind == "name" and text not in _KEYWORDS:
            return TypeSpec(text, False, token.line)
        raise self.error("expected a type", token)

    def declaration(self) -> Declaration:
        line = self.peek().line
        size: Value | None
        if self.peek().text == "void" and self.peek(1).text in (";", ")"):
            self.take()
            return Declaration("", TypeSpec("void", True, line), "void", line=line)
        if self.peek().text in ("opaque", "string"):
            kind_name = self.take().text
            name = self.identifier("a field's name")
            if kind_name == "opaque" and self.accept("["):
                size = self.value()
                self.expect("]")
                return Declaration(name, TypeSpec("opaque", True, line), "fixed", size, line)
            self.expect("<")
            size = None if self.peek().text == ">" else self.value()
            self.expect(">")
            return Declaration(name, TypeSpec(kind_name, True, line), "variable", size, line)
        spec = self.type_specifier()
        if spec.name == "void":
            raise self.error("void cannot be declared with a name")
        if self.accept("*"):
            return Declaration(self.identifier("a field's name"), spec, "optional", line=line)
        name = self.identifier("a field's name")
        if self.accept("["):
            size = self.value()
            self.expect("]")
            return Declaration(name, spec, "fixed", size, line)
        if self.accept("<"):
            size = None if self.peek().text == ">" else self.value()
            self.expect(">")
            return Declaration(name, spec, "variable", size, line)
        return Declaration(name, spec, "plain", line=line)

    def procedure_type(self) -> TypeSpec:
        if self.peek().text == "string":
            token = self.take()
            return TypeSpec("string", True, token.line)
        return self.type_specifier()

    def program(self, line: int) -> ProgramDef:
        program = ProgramDef(self.identifier("a program's name"), 0, line=line)
        self.expect("{")
        while not self.accept("}"):
            version_line = self.expect("version").line
            version = VersionDef(self.identifier("a version's name"), 0, line=version_line)
            self.expect("{")
            while not self.accept("}"):
                procedure_line = self.peek().line
                result = self.procedure_type()
                name = self.identifier("a procedure's name")
                self.expect("(")
                arguments = [self.procedure_type()]
                while self.accept(","):
                    arguments.append(self.procedure_type())
                self.expect(")")
                self.expect("=")
                number = self.value()
                self.expect(";")
                if len(arguments) == 1 and arguments[0].name == "void":
                    arguments = []
                elif any(a.name == "void" for a in arguments):
                    raise XFileError(
                        f"{self.filename}:{procedure_line}: "
                        "void must be a procedure's only argument"
                    )
                version.procedures.append(
                    ProcedureDef(name, number, result, arguments, procedure_line)
                )
            self.expect("=")
            version.number = self.value()
            self.expect(";")
            if not version.procedures:
                raise XFileError(f"{self.filename}:{version_line}: a version needs procedures")
            program.versions.append(version)
        self.expect("=")
        program.number = self.value()
        self.expect(";")
        if not program.versions:
            raise XFileError(f"{self.filename}:{line}: a program needs at least one version")
        return program


def parse(source: str, filename: str = "<string>") -> list[Definition]:
    """Parse RPC language; raise :class:`XFileError` naming the line of a mistake."""
    return _Parser(source, filename).specification()
