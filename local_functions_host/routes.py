"""Functions (ASP.NET Core) route templates: ``orders/{correlationId}``, ``{id:int}``, ``{name?}``, ``{*rest}``.

Literal segments match case-insensitively; more specific templates win over less specific ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from .errors import HostConfigurationError

_GUID = r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}|\{[0-9A-Fa-f-]{36}\}|\([0-9A-Fa-f-]{36}\)"
_SIMPLE_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "decimal": r"-?\d+(?:\.\d+)?",
    "double": r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?",
    "float": r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?",
    "bool": r"(?i:true|false)",
    "guid": _GUID,
    "alpha": r"[A-Za-z]+",
    "datetime": r"[^/]+",
}
_PARAMETER = re.compile(r"^\{(?P<catch>\*{1,2})?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>.*?)(?P<optional>\?)?\}$")


@dataclass(frozen=True)
class _Segment:
    literal: str | None
    name: str | None = None
    pattern: str = "[^/]+"
    optional: bool = False
    catch_all: bool = False
    checks: tuple[tuple[str, tuple[str, ...]], ...] = ()


class RouteTemplate:
    """A compiled route template; ``match(path)`` gives the route parameters or ``None``."""

    def __init__(self, template: str) -> None:
        self.template = template.strip("/")
        self._segments = tuple(_parse_segment(part, template) for part in self.template.split("/")) if self.template else ()
        for index, segment in enumerate(self._segments):
            if segment.catch_all and index != len(self._segments) - 1:
                raise HostConfigurationError(f"Route {template!r}: a catch-all parameter must be the last segment.")
        self._regex = re.compile("^" + self._build_regex() + "$")
        self.parameters = tuple(s.name for s in self._segments if s.name)

    @property
    def precedence(self) -> tuple[int, ...]:
        """Sort key: literal segments before constrained before plain before optional/catch-all ones."""
        order = []
        for segment in self._segments:
            if segment.literal is not None:
                order.append(0)
            elif segment.catch_all:
                order.append(4)
            elif segment.optional:
                order.append(3)
            elif segment.pattern != "[^/]+" or segment.checks:
                order.append(1)
            else:
                order.append(2)
        return (*order, 5)

    def match(self, path: str) -> dict[str, str] | None:
        """``path`` is the part after the route prefix, without leading or trailing slashes, still escaped."""
        found = self._regex.match(path)
        if not found:
            return None
        values: dict[str, str] = {}
        for index, segment in enumerate(self._segments):
            if segment.name is None:
                continue
            raw = found.group(f"p{index}")
            if raw is None:
                continue
            value = unquote(raw)
            if not _passes(segment.checks, value):
                return None
            values[segment.name] = value
        return values

    def _build_regex(self) -> str:
        pattern = ""
        for index, segment in enumerate(self._segments):
            separator = "/" if index else ""
            if segment.literal is not None:
                pattern += separator + re.escape(segment.literal)
            elif segment.catch_all:
                pattern += f"(?:{separator}(?P<p{index}>.*))?" if index else f"(?P<p{index}>.*)"
            elif segment.optional:
                pattern += f"(?:{separator}(?P<p{index}>{segment.pattern}))?"
            else:
                pattern += f"{separator}(?P<p{index}>{segment.pattern})"
        return f"(?i:{pattern})" if pattern else ""


def _parse_segment(part: str, template: str) -> _Segment:
    if "{" not in part and "}" not in part:
        if not part:
            raise HostConfigurationError(f"Route {template!r} has an empty segment.")
        return _Segment(literal=part)
    found = _PARAMETER.match(part)
    if not found:
        raise HostConfigurationError(
            f"Route {template!r}: segment {part!r} is not supported by the local host; use a literal or a "
            "single {parameter} per segment."
        )
    constraints, default = _split_constraints(found["rest"], template)
    pattern_parts: list[str] = []
    checks: list[tuple[str, tuple[str, ...]]] = []
    for constraint in constraints:
        name, _, args_text = constraint.partition("(")
        args = tuple(a.strip() for a in args_text[:-1].split(",")) if args_text else ()
        key = name.strip().lower()
        if key in _SIMPLE_CONSTRAINTS:
            pattern_parts.append(_SIMPLE_CONSTRAINTS[key])
        elif key == "regex" and args_text:
            expression = args_text[:-1].replace("{{", "{").replace("}}", "}")
            pattern_parts.append(expression.removeprefix("^").removesuffix("$"))
        elif key in ("minlength", "maxlength", "length", "min", "max", "range"):
            checks.append((key, args))
        else:
            raise HostConfigurationError(f"Route {template!r}: constraint {constraint!r} is not supported locally.")
    pattern = "[^/]+"
    if pattern_parts:
        pattern = "".join(f"(?=(?:{p})(?:/|$))" for p in pattern_parts[1:]) + f"(?:{pattern_parts[0]})"
    return _Segment(
        literal=None,
        name=found["name"],
        pattern=pattern,
        optional=bool(found["optional"]) or default is not None,
        catch_all=bool(found["catch"]),
        checks=tuple(checks),
    )


def _split_constraints(rest: str, template: str) -> tuple[list[str], str | None]:
    default = None
    if "=" in rest and "(" not in rest.split("=", 1)[0]:
        rest, default = rest.split("=", 1)
    constraints: list[str] = []
    depth = 0
    current = ""
    for char in rest:
        if char == ":" and depth == 0:
            if current:
                constraints.append(current)
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    if current:
        constraints.append(current)
    if depth:
        raise HostConfigurationError(f"Route {template!r} has unbalanced parentheses in a constraint.")
    return constraints, default


def _passes(checks: tuple[tuple[str, tuple[str, ...]], ...], value: str) -> bool:
    try:
        for key, args in checks:
            if key == "minlength" and len(value) < int(args[0]):
                return False
            if key == "maxlength" and len(value) > int(args[0]):
                return False
            if key == "length":
                low, high = (int(args[0]), int(args[-1]))
                if not low <= len(value) <= high:
                    return False
            if key in ("min", "max", "range"):
                number = int(value)
                if key == "min" and number < int(args[0]):
                    return False
                if key == "max" and number > int(args[0]):
                    return False
                if key == "range" and not int(args[0]) <= number <= int(args[1]):
                    return False
    except ValueError:
        return False
    return True
