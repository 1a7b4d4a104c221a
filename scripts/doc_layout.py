#!/usr/bin/env python
"""Usage: python scripts/doc_layout.py

The package's layout for docs/internals.md (make docs): each module of bn_decay_probe/ with the
first sentence of its docstring, so the page says what the code says. Reads the files, imports
nothing."""
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


def main():
    print("%s/" % PACKAGE)
    folder = os.path.join(ROOT, PACKAGE)
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".py")):
        lines = textwrap.wrap(summary(os.path.join(folder, name)), WIDTH - INDENT) or [""]
        print(("  %-20s  " % name + lines[0]).rstrip())
        for line in lines[1:]:
            print(" " * INDENT + line)


if __name__ == "__main__":
    main()
