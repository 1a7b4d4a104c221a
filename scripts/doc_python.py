#!/usr/bin/env python
"""Usage: python scripts/doc_python.py FILE.py

A Python prompt transcript for the docs (make docs): each top-level statement of FILE is printed
after ">>> " (continuation lines after "... "), then run; an expression's value is printed as
the interactive prompt would print it, and an exception as its last traceback line (the stack
elided, as doctest writes it). Comment lines above a statement go with it."""
import ast
import sys
import traceback


def statements(source):
    """(first line, last line) of each top-level statement, 1-based, with the comment lines
    above it and without the blank lines after it (the AST of Python 3.7 has no end lines)."""
    lines = source.splitlines()
    tree = ast.parse(source)
    starts = [getattr(node, "decorator_list", None) and node.decorator_list[0].lineno
              or node.lineno for node in tree.body]
    spans = []
    for index, (node, start) in enumerate(zip(tree.body, starts)):
        end = starts[index + 1] - 1 if index + 1 < len(starts) else len(lines)
        while end > start and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
            end -= 1
        first = start
        while first > 1 and lines[first - 2].lstrip().startswith("#"):
            first -= 1
        spans.append((node, first, end))
    return lines, spans


def main(path):
    with open(path) as handle:
        source = handle.read()
    lines, spans = statements(source)
    namespace = {"__name__": "__main__"}
    for node, first, end in spans:
        shown = lines[first - 1:end]
        code_start = node.lineno - first  # the statement itself, below its comments
        for i, line in enumerate(shown):
            print(("... " if i > code_start else ">>> ") + line if line else
                  (">>>" if i <= code_start else "..."))
        sys.stdout.flush()
        try:
            run(node, path, namespace)
        except Exception as exc:  # shown as the prompt shows it, stack elided as doctest does
            print("Traceback (most recent call last):\n  ...")
            print("".join(traceback.format_exception_only(type(exc), exc)), end="")
        sys.stdout.flush()


def run(node, path, namespace):
    if isinstance(node, ast.Expr):
        value = eval(compile(ast.Expression(node.value), path, "eval"), namespace)
        if value is not None:
            print(repr(value))
    else:
        module = (ast.Module([node], type_ignores=[]) if sys.version_info >= (3, 8)
                  else ast.Module([node]))
        exec(compile(module, path, "exec"), namespace)


if __name__ == "__main__":
    main(sys.argv[1])
