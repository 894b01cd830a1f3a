"""Model expressions (Python syntax, see :mod:`spikeinterface_dic.models.base`) printed in other languages.

A declaration's expressions use numbers, names, + - * / **, unary minus, ``exp``, ``abs`` and single comparisons
(``1.0*(abs(V - c) < 0.05)``, DA's guard of a removable pole). One printer walks the tree and writes each language's
spelling, so an exporter never re-types an equation.
"""

from __future__ import annotations

import ast

_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_COMPARE = {ast.Lt: "lt", ast.Gt: "gt", ast.LtE: "le", ast.GtE: "ge"}


class Dialect:
    """How a language spells powers, functions, comparisons and names; subclasses override what differs."""

    power = "^"
    functions = {"exp": "exp", "abs": "fabs"}

    def __init__(self, names: dict | None = None):
        self.names = dict(names or {})  # model name -> printed name (or a number: constants)

    def name(self, identifier: str) -> str:
        if identifier not in self.names:
            raise ValueError(f"expression uses {identifier!r}, which this export does not define")
        value = self.names[identifier]
        return repr(float(value)) if isinstance(value, (int, float)) else str(value)

    def compare(self, kind: str, left: str, right: str) -> str:
        return f"dic_{kind}({left}, {right})"

    def number(self, value: float) -> str:
        return repr(float(value))


def print_expression(expression: str, dialect: Dialect, hoist=None, max_length: int = 160) -> str:
    """``expression`` written in ``dialect``, fully parenthesised (no reliance on the target's precedence rules).

    ``hoist(text) -> name``, when given, receives every sub-expression longer than ``max_length`` characters and
    returns the name of a temporary holding it (NMODL limits the length of a line).
    """

    def visit(node) -> str:
        text = _visit(node)
        if hoist is not None and len(text) > max_length and not isinstance(node, ast.Expression):
            return hoist(text)
        return text

    def _visit(node) -> str:
        if isinstance(node, ast.Expression):
            return visit(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return dialect.number(node.value)
        if isinstance(node, ast.Name):
            return dialect.name(node.id)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return f"({visit(node.left)} {_BINARY[type(node.op)]} {visit(node.right)})"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            return f"({visit(node.left)}{dialect.power}{visit(node.right)})"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            sign = "-" if isinstance(node.op, ast.USub) else ""
            return f"({sign}{visit(node.operand)})"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in dialect.functions:
            if len(node.args) != 1 or node.keywords:
                raise ValueError(f"{node.func.id} takes one argument in model expressions: {ast.unparse(node)}")
            return f"{dialect.functions[node.func.id]}({visit(node.args[0])})"
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            return dialect.compare(_COMPARE[type(node.ops[0])], visit(node.left), visit(node.comparators[0]))
        raise ValueError(f"cannot export the expression part {ast.unparse(node)!r} (in {expression!r})")

    return visit(ast.parse(expression, mode="eval"))


def expression_names(expression: str) -> set[str]:
    """Every name an expression reads (functions excluded)."""
    tree = ast.parse(expression, mode="eval")
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and id(node) not in called}
