#!/usr/bin/env python
"""Usage: python scripts/doc_layout.py [--depth N]

The package's layout for docs/internals.md (make docs): each module of bn_decay_probe/ (and of
its subpackages, down to N levels) with the first sentence of its docstring, so the page says
what the code says. Reads the files, imports nothing."""
import argparse
import ast
import os
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "bn_decay_probe"
WIDTH = 100
INDENT = 2 + 22  # "  name.py" padded to the description column


def summary(path):
    with open(path) as handle:
        doc = ast.get_docstring(ast.parse(handle.read())) or ""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    end = paragraph.find(". ")
    return paragraph if end < 0 else paragraph[:end + 1]


def modules(folder, depth, deepest):
    """Each module (and subpackage, as name/ followed by its modules) of folder."""
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".py") and not (depth > 1 and name == "__init__.py"):
            describe(name, summary(path), depth)
        elif os.path.isfile(os.path.join(path, "__init__.py")):
            describe(name + "/", summary(os.path.join(path, "__init__.py")), depth)
            if depth < deepest:
                modules(path, depth + 1, deepest)


def describe(name, text, depth):
    lines = textwrap.wrap(text, WIDTH - INDENT) or [""]
    label = "  " * depth + name
    if len(label) > INDENT - 2:  # a long name: its description starts on the next line
        print(label)
        label = ""
    print(("%-*s" % (INDENT, label) + lines[0]).rstrip())
    for line in lines[1:]:
        print(" " * INDENT + line)


def main():
    parser = argparse.ArgumentParser(description="the package's layout, from its docstrings")
    parser.add_argument("--depth", type=int, default=100, metavar="N",
                        help="levels of subpackages shown (default: all)")
    print("%s/" % PACKAGE)
    modules(os.path.join(ROOT, PACKAGE), 1, parser.parse_args().depth)


if __name__ == "__main__":
    main()
