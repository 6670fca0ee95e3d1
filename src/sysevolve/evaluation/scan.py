"""Static checks of a candidate's source that evaluators report as warnings.

A program that embeds a long literal run of integers has probably memorised an answer for the
instances it is scored on (a schedule, a placement); it is still scored, and the warning is
shown with its result so the researcher can look, and the held-out split can confirm.
"""

from __future__ import annotations

import ast
import re

_DIGITS_ONLY = re.compile(r"[\d\s,;:\[\]()-]*")


def longest_integer_literal(source: str) -> int:
    """The most integers in one list, tuple or set display, or in one digits-only string
    ("3 17 5 ..." hides a schedule as well as [3, 17, 5, ...]); 0 if the source does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return 0
    longest = 0
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            if node.elts and all(_is_int_literal(e) for e in node.elts):
                longest = max(longest, len(node.elts))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _DIGITS_ONLY.fullmatch(node.value):
                longest = max(longest, len(re.findall(r"\d+", node.value)))
    return longest


def memorised_data_warnings(source: str, min_integers: int = 50, what: str = "data") -> list[str]:
    """A warning when the source embeds `min_integers` or more literal integers in a row."""
    longest = longest_integer_literal(source)
    if longest >= min_integers:
        return [f"source embeds a literal sequence of {longest} integers (memorised {what}?)"]
    return []


def _is_int_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) is int
