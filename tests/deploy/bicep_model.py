"""Reads the Bicep files in infra/ with the tree-sitter Bicep grammar and evaluates what can be known
without Azure: literals, string interpolation, parameters, variables, loops over known arrays and module
parameters. Anything that depends on Azure (resource properties, functions such as ``guid()``) is ``UNKNOWN``.

This is enough to compare names and properties with k8s/ and the app's settings; it is not a Bicep compiler
(``bicep build`` and what-if need the Bicep CLI and Azure, see docs/deploy-aks.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

PARSER = Parser(Language(tree_sitter_bicep.language()))


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


def syntax_errors(path: Path) -> list[str]:
    """``line:column: text`` of every place the grammar could not parse."""
    errors: list[str] = []

    def walk(node: Node) -> None:
        if node.type == "ERROR" or node.is_missing:
            line, column = node.start_point
            errors.append(f"{path}:{line + 1}:{column + 1}: cannot parse {node.text.decode()[:60]!r}")
            return
        for child in node.children:
            walk(child)

    walk(PARSER.parse(path.read_bytes()).root_node)
    return errors


@dataclass
class Resource:
    symbol: str
    type: str  # e.g. Microsoft.ServiceBus/namespaces/queues (API version dropped)
    instances: list[dict[str, Any]]  # one body per loop iteration (one when not a loop)


@dataclass
class Template:
    path: Path
    parameters: dict[str, Any]
    variables: dict[str, Any] = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=list)
    modules: dict[str, Template] = field(default_factory=dict)

    def resources_of(self, type_: str) -> list[dict[str, Any]]:
        """Every instance of resources of ``type_`` here and in the modules below."""
        found = [body for resource in self.resources if resource.type == type_ for body in resource.instances]
        for module in self.modules.values():
            found += module.resources_of(type_)
        return found

    def module(self, symbol: str) -> Template:
        return self.modules[symbol]


def load(path: Path, parameters: dict[str, Any] | None = None) -> Template:
    """Evaluate ``path`` with ``parameters`` (missing ones take their defaults), its modules recursively."""
    root = PARSER.parse(path.read_bytes()).root_node
    if root.has_error:
        raise ValueError("; ".join(syntax_errors(path)))
    template = Template(path, dict(parameters or {}))
    scope: dict[str, Any] = template.parameters
    for node in root.named_children:
        if node.type == "parameter_declaration":
            name = node.named_children[0].text.decode()
            default = [c for c in node.named_children[1:] if c.type != "type"]
            if name not in scope:
                scope[name] = _value(default[-1], scope) if default else UNKNOWN
        elif node.type == "variable_declaration":
            name = node.named_children[0].text.decode()
            template.variables[name] = scope[name] = _value(node.named_children[-1], scope)
    for node in root.named_children:
        if node.type == "resource_declaration":
            if any(child.type == "existing" for child in node.children):
                continue  # a reference to a resource declared elsewhere, not a declaration
            symbol, type_string, body = node.named_children[0], node.named_children[1], node.named_children[-1]
            template.resources.append(Resource(symbol.text.decode(), _value(type_string, scope).split("@")[0],
                                               _instances(body, scope)))
        elif node.type == "module_declaration":
            symbol, source, body = node.named_children[0], node.named_children[1], node.named_children[-1]
            (instance,) = _instances(body, scope)
            template.modules[symbol.text.decode()] = load(path.parent / _value(source, scope),
                                                          instance.get("params", {}))
    return template


def load_environment(main: Path, parameters_file: Path) -> Template:
    """``main`` as ``az deployment group create -p @parameters_file`` would evaluate it."""
    values = json.loads(parameters_file.read_text())["parameters"]
    return load(main, {name: entry["value"] for name, entry in values.items()})


def _instances(body: Node, scope: dict[str, Any]) -> list[dict[str, Any]]:
    if body.type != "for_statement":
        return [_value(body, scope)]
    named = body.named_children
    item_name, index_name = _loop_names(named[0])
    items = _value(named[1], scope)
    if items is UNKNOWN or not isinstance(items, list):
        return [UNKNOWN]
    instances = []
    for index, item in enumerate(items):
        inner = {**scope, item_name: item}
        if index_name:
            inner[index_name] = index
        instances.append(_value(named[-1], inner))
    return instances


def _loop_names(node: Node) -> tuple[str, str | None]:
    if node.type == "for_loop_parameters":
        names = [child.text.decode() for child in node.named_children]
        return names[0], names[1] if len(names) > 1 else None
    return node.text.decode(), None


def _value(node: Node, scope: dict[str, Any]) -> Any:
    kind = node.type
    if kind == "string":
        parts = []
        for child in node.named_children:
            if child.type == "string_content":
                parts.append(child.text.decode())
            elif child.type == "escape_sequence":
                parts.append(child.text.decode()[1:])
            elif child.type == "interpolation":
                value = _value(child.named_children[0], scope)
                if value is UNKNOWN:
                    return UNKNOWN
                parts.append(str(value).lower() if isinstance(value, bool) else str(value))
        return "".join(parts)
    if kind == "number":
        return int(node.text.decode())
    if kind == "boolean":
        return node.text.decode() == "true"
    if kind == "null":
        return None
    if kind == "object":
        result: dict[str, Any] = {}
        for prop in node.named_children:
            if prop.type != "object_property":
                continue
            key_node, value_node = prop.named_children[0], prop.named_children[-1]
            key = _value(key_node, scope) if key_node.type == "string" else key_node.text.decode()
            result[key] = _value(value_node, scope)
        return result
    if kind == "array":
        return [_value(child, scope) for child in node.named_children if child.type != "comment"]
    if kind == "identifier":
        return scope.get(node.text.decode(), UNKNOWN)
    if kind == "member_expression":
        target = _value(node.named_children[0], scope)
        member = node.named_children[-1].text.decode()
        return target.get(member, UNKNOWN) if isinstance(target, dict) else UNKNOWN
    if kind == "subscript_expression":
        target, index = _value(node.named_children[0], scope), _value(node.named_children[-1], scope)
        try:
            return target[index]
        except (TypeError, KeyError, IndexError):
            return UNKNOWN
    if kind == "parenthesized_expression":
        return _value(node.named_children[0], scope)
    return UNKNOWN
