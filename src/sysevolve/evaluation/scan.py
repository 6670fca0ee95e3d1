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


# Attribute calls and names through which a program can reach its evaluator's state.
_INTROSPECTION = {
    ("sys", "_getframe"): "frame inspection (sys._getframe)",
    ("inspect", "currentframe"): "frame inspection (inspect.currentframe)",
    ("inspect", "stack"): "stack inspection (inspect.stack)",
    ("inspect", "getouterframes"): "stack inspection (inspect.getouterframes)",
    ("inspect", "trace"): "stack inspection (inspect.trace)",
    ("gc", "get_objects"): "heap scan (gc.get_objects)",
    ("gc", "get_referrers"): "heap scan (gc.get_referrers)",
    ("gc", "get_referents"): "heap scan (gc.get_referents)",
}
_FRAME_ATTRIBUTES = {"f_back", "f_globals", "f_locals", "tb_frame", "gi_frame", "cr_frame"}
_PATCHABLE_MODULES = {"time", "builtins", "sys", "os", "random", "gc", "inspect"}
_SUSPICIOUS_IMPORTS = {"ctypes": "raw memory access (import ctypes)"}


def tampering_warnings(source: str, lines: set[int] | None = None) -> list[str]:
    """The usual routes by which evolved code tampers with its evaluation, one line each with
    its line number: frame and stack inspection, heap scans, writes to sys.modules, builtins or
    the clock, and file paths outside the scratch directory. Only 1-based `lines` are looked at
    when given (the evolvable ones). Empty if the source does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        reason = _tampering(node) if lines is None or line in lines else None
        if reason:
            found.add((line, reason))
    return [f"line {line}: {reason}" for line, reason in sorted(found)]


def _dotted(node: ast.AST) -> tuple[str, ...]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return tuple(reversed(parts))
    return ()


def _tampering(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        dotted = _dotted(node)
        if dotted[-2:] in _INTROSPECTION:
            return _INTROSPECTION[dotted[-2:]]
        if node.attr in _FRAME_ATTRIBUTES:
            return f"frame access (.{node.attr})"
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        for name in names:
            if name.split(".")[0] in _SUSPICIOUS_IMPORTS:
                return _SUSPICIOUS_IMPORTS[name.split(".")[0]]
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
        targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
        for target in targets:
            reason = _patched(target)
            if reason:
                return reason
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr" and node.args:
        module = _dotted(node.args[0])
        if module and module[0] in _PATCHABLE_MODULES:
            return f"patches module {'.'.join(module)} (setattr)"
    if isinstance(node, ast.Name) and node.id == "__builtins__":
        return "reaches __builtins__"
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and _outside_scratch(node.value):
        return f"file path outside the scratch directory ({node.value[:40]!r})"
    return None


def _patched(target: ast.AST) -> str | None:
    if isinstance(target, ast.Subscript) and _dotted(target.value) == ("sys", "modules"):
        return "writes to sys.modules"
    if isinstance(target, ast.Attribute):
        dotted = _dotted(target)
        if dotted and dotted[0] in _PATCHABLE_MODULES:
            return f"patches {'.'.join(dotted)}"
    return None


def _outside_scratch(text: str) -> bool:
    """An absolute path into the machine's file system, or a path climbing out with '..'."""
    if "\n" in text or " " in text.strip():
        return False
    return text.startswith(("/proc/", "/etc/", "/home/", "/root/", "/tmp/", "/work/", "/dev/")) or text.startswith("../")
