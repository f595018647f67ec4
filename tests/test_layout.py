"""The package's layering: nothing imports upward, no import circle, and a task's package is
imported only when it is named (a classification run never loads pycocotools)."""

import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "efficientnet_tf"
# Bottom to top; the package root (the public face) and the command modules share the top.
LAYERS = {"specs": 0, "data": 1, "models": 2, "serving": 3, "tasks": 4, "train": 5, "scaling": 6}
TOP = 7


def module_names():
    """{dotted name: path} of every module of the package."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(path, known):
    """(line, module) of every efficientnet_tf module `path` imports, at any depth (a function's
    imports included): `from a import b` names a.b when that is a module, else a."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.append((node.lineno, child if child in known else node.module))
    return [(line, name) for line, name in found if name.split(".")[0] == "efficientnet_tf"]


def layer(name):
    parts = name.split(".")
    return LAYERS.get(parts[1], TOP) if len(parts) > 1 else TOP


def test_nothing_imports_upward():
    known = module_names()
    upward = [f"{name} imports {target} (line {line})"
              for name, path in known.items() for line, target in imports_of(path, known)
              if layer(target) > layer(name)]
    assert upward == []


def test_no_module_is_in_an_import_circle():
    known = module_names()
    graph = {name: {target for _, target in imports_of(path, known) if target != name}
             for name, path in known.items()}
    # A package's __init__ importing its own modules is not a circle through them.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    circles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for target in graph.get(node, ()):
                if target == start:
                    circles.append(" -> ".join(trail + [start]))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, trail + [target]))
    assert circles == []


def test_a_classification_run_imports_no_detection_code():
    script = ("import sys\n"
              "import efficientnet_tf.tasks.classification, efficientnet_tf.train.trainer\n"
              "import efficientnet_tf.export, efficientnet_tf.predict, efficientnet_tf.main\n"
              "print(sorted(m for m in sys.modules if m.startswith('pycocotools') or\n"
              "             m.startswith('efficientnet_tf.tasks.detection')))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
