"""The package's shape, read from its source (no import): no import cycle, no module reaching for
another module's underscore names, each shared name defined once, the repair independent of the
doctor, and the public API exporting every exception. Imports inside functions count; imports
under ``if TYPE_CHECKING:`` do not (they never run)."""
import ast
import os
from collections import defaultdict

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "bn_decay_probe"


def _modules():
    """Module name -> (path, is a package's __init__)."""
    found = {}
    for directory, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                init = parts[-1] == "__init__"
                found[".".join(parts[:-1] if init else parts)] = (path, init)
    return found


MODULES = _modules()


def _type_checking_nodes(tree):
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    return skipped


def _absolute(module, init, node):
    """The module an ImportFrom names, made absolute."""
    if not node.level:
        return node.module
    base = module.split(".") if init else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class Imports:
    """Per module of ``sources`` (name -> (source text, is a package's __init__)): the modules
    of ``sources`` it imports (edges), and the underscore names it takes from another module
    (imported by name, or as an attribute of a module it imported)."""

    def __init__(self, sources):
        self.edges = defaultdict(set)
        self.foreign_private = []
        for module, (text, init) in sources.items():
            tree = ast.parse(text)
            skipped = _type_checking_nodes(tree)
            aliases = {}  # local name -> package module
            for node in ast.walk(tree):
                if id(node) in skipped:
                    continue
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name in sources:
                            self.edges[module].add(alias.name)
                            if alias.asname:
                                aliases[alias.asname] = alias.name
                elif isinstance(node, ast.ImportFrom):
                    source = _absolute(module, init, node)
                    if source not in sources:
                        continue
                    for alias in node.names:
                        target = "%s.%s" % (source, alias.name)
                        if target in sources:
                            self.edges[module].add(target)
                            aliases[alias.asname or alias.name] = target
                        else:
                            self.edges[module].add(source)
                            if alias.name.startswith("_") and not alias.name.startswith("__"):
                                self.foreign_private.append(
                                    "%s imports %s from %s" % (module, alias.name, source))
            for node in ast.walk(tree):
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                        and node.value.id in aliases and node.attr.startswith("_")
                        and not node.attr.startswith("__")):
                    self.foreign_private.append("%s uses %s.%s" % (
                        module, aliases[node.value.id], node.attr))
            self.edges[module].discard(module)


IMPORTS = Imports({module: (open(path).read(), init)
                   for module, (path, init) in MODULES.items()})


def _cycles(edges):
    """Every cycle's modules, found by Tarjan's strongly connected components."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(set(edges) | {t for targets in edges.values() for t in targets}):
        if node not in index:
            visit(node)
    return found


def test_the_detector_finds_cycles_and_foreign_underscore_names():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    found = Imports({
        "pkg": ("", True),
        "pkg.a": ("from .b import _x, y\nfrom . import c\n", False),
        "pkg.b": ("def f():\n    from .c import z\n", False),  # inside a function: counts
        "pkg.c": ("import pkg.a as a\na._private()\n"
                  "if TYPE_CHECKING:\n    from .d import w\n", False),
        "pkg.d": ("", False)})
    edges = {m: t for m, t in found.edges.items() if t}
    assert edges == {"pkg.a": {"pkg.b", "pkg.c"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert _cycles(found.edges) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert found.foreign_private == ["pkg.a imports _x from pkg.b", "pkg.c uses pkg.a._private"]


def test_no_import_cycle():
    assert _cycles(IMPORTS.edges) == []


def test_no_module_takes_another_modules_underscore_names():
    assert IMPORTS.foreign_private == []


def test_the_repair_and_the_checkpoint_layer_import_nothing_of_the_doctor():
    for module, targets in IMPORTS.edges.items():
        if module.startswith((PACKAGE + ".repair", PACKAGE + ".checkpoints")):
            assert not [t for t in targets if t.startswith(PACKAGE + ".doctor")], module


def test_lower_rooms_import_nothing_of_the_skins():
    """The library never imports the command line or the pytest plugin."""
    skins = (PACKAGE + ".cli", PACKAGE + ".__main__", PACKAGE + ".pytest_plugin")
    for module, targets in IMPORTS.edges.items():
        if not module.startswith(skins):
            assert not [t for t in targets if t.startswith(skins)], module


def test_nothing_imports_the_package_init():
    """Everything the package ``__init__`` imports would be imported with it (such as
    __version__, which lives in _version)."""
    importers = [m for m, targets in IMPORTS.edges.items() if PACKAGE in targets]
    assert importers == [PACKAGE + ".__main__"] or importers == []


# Names that more than one room needs: each has one definition.
SHARED = ("MOVING", "PHASES", "SNAPSHOTS", "moving_name", "short_name", "first_line",
          "IF_OPS", "CHECKPOINT_FILE", "MARKER_KEY", "__version__", "output_width",
          "fold_table", "check_writable", "ancestors", "descendants", "Parser", "EXIT_BAD_INPUT",
          "EXIT_BROKEN_PIPE")


def _top_level_definitions():
    defined = defaultdict(list)
    for module, (path, _) in MODULES.items():
        for node in ast.parse(open(path).read()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined[node.name].append(module)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    for name in ast.walk(target):
                        if isinstance(name, ast.Name):
                            defined[name.id].append(module)
    return defined


@pytest.mark.parametrize("name", SHARED)
def test_shared_names_are_defined_once(name):
    assert len(_top_level_definitions()[name]) == 1, _top_level_definitions()[name]


def test_no_constant_is_defined_twice_with_the_same_value():
    values = defaultdict(set)
    for module, (path, _) in MODULES.items():
        for node in ast.parse(open(path).read()).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id.lstrip("_").isupper()):
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:
                    continue
                values[(node.targets[0].id.lstrip("_"), repr(value))].add(module)
    twice = {key: sorted(found) for key, found in values.items() if len(found) > 1}
    assert twice == {}


def test_every_exception_class_is_exported():
    import bn_decay_probe
    from bn_decay_probe import errors

    classes = [name for name, value in vars(errors).items()
               if isinstance(value, type) and issubclass(value, Exception)
               and value.__module__ == errors.__name__]
    assert len(classes) >= 8
    for name in classes:
        assert name in bn_decay_probe.__all__, name
        assert getattr(bn_decay_probe, name) is getattr(errors, name)
    # ... and no exception class is defined outside the errors module.
    defined = _top_level_definitions()
    for module, (path, _) in MODULES.items():
        for node in ast.parse(open(path).read()).body:
            if isinstance(node, ast.ClassDef) and any(
                    "Error" in ast.dump(base) or "Warning" in ast.dump(base)
                    for base in node.bases):
                assert module == PACKAGE + ".errors", (module, node.name, defined[node.name])


def test_every_error_carries_its_exit_status():
    from bn_decay_probe import errors

    assert errors.ProbeConfigError("x").exit_code == errors.EXIT_BAD_INPUT == 2
    assert errors.CheckpointError("x").exit_code == 2
    assert isinstance(errors.CheckpointError("x"), errors.ProbeConfigError)
    assert errors.GraphStructureError("x").exit_code == errors.EXIT_INTERNAL
    assert isinstance(errors.BackendUnavailableError("x"), ImportError)
