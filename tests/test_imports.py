"""No import cycle among grubench's modules (grubench/ and kernels/, installed as
grubench.kernels), counting the imports inside functions too: a cycle hidden in a
function still ties two modules together, and it breaks as soon as someone moves the
import to the top."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Where each package's sources live (kernels/ installs as grubench.kernels).
SOURCES = {"grubench": ROOT / "grubench", "grubench.kernels": ROOT / "kernels"}


def module_files() -> dict[str, Path]:
    """Every module of the package by its dotted name."""
    modules = {}
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def imported_names(tree: ast.AST, module: str, is_package: bool):
    """(dotted name, inside a function) of every import in ``tree``, relative imports
    resolved; ``from X import y`` gives X.y (a module or not) and X."""
    package = module if is_package else module.rpartition(".")[0]

    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, in_function
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    yield f"{base}.{alias.name}", in_function
                yield base, in_function
            yield from walk(child, inside)

    yield from walk(tree, False)


def import_graph(files: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """Each grubench module -> the grubench modules it imports (anywhere in it).
    Importing ``a.b.c`` runs a, a.b and a.b.c: each of ours is a dependency, except the
    importer's own packages, which run before it anyway."""
    files = module_files() if files is None else files
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        own = {".".join(module.split(".")[:end]) for end in range(1, module.count(".") + 2)}
        targets = set()
        for name, _ in imported_names(tree, module, path.name == "__init__.py"):
            parts = name.split(".")
            targets.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
        graph[module] = {t for t in targets if t in files and t not in own}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, str] = {}         # "open" while on the stack, "done" after
    stack: list[str] = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def function_level_imports(files: dict[str, Path] | None = None) -> dict[str, int]:
    """How many imports each module makes inside functions."""
    files = module_files() if files is None else files
    counts = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        inner = [node for function in ast.walk(tree)
                 if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for node in function.body for node in ast.walk(node)
                 if isinstance(node, (ast.Import, ast.ImportFrom))]
        counts[module] = len(set(map(id, inner)))
    return counts


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_graph_sees_imports_inside_functions(tmp_path):
    """The check itself: a cycle closed by an import inside a function, a relative import
    and a ``from package import module`` are all found."""
    package = tmp_path / "grubench"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from grubench import b\n")
    (package / "b.py").write_text("def late():\n    from .c import thing\n")
    (package / "c.py").write_text("import os\n\n\ndef f():\n    import grubench.a\n")
    files = {"grubench": package / "__init__.py", **{
        f"grubench.{name}": package / f"{name}.py" for name in "abc"}}
    graph = import_graph(files)
    assert graph == {"grubench": set(), "grubench.a": {"grubench.b"},
                     "grubench.b": {"grubench.c"}, "grubench.c": {"grubench.a"}}
    assert find_cycle(graph) == ["grubench.a", "grubench.b", "grubench.c", "grubench.a"]
    assert function_level_imports(files)["grubench.c"] == 1
    (package / "c.py").write_text("import os\n")
    assert find_cycle(import_graph(files)) is None


def test_the_worker_imports_nothing_that_measures_or_reports():
    """The worker is the bottom of the harness: what it runs is named in its requests
    (grubench.handlers), so it depends on no module above it."""
    above = {"grubench.runner", "grubench.report", "grubench.regress", "grubench.ab",
             "grubench.accuracy", "grubench.measure", "grubench.training.runner",
             "grubench.cluster", "grubench.commands", "grubench.cli"}
    graph = import_graph()

    def reachable(node, seen):
        for target in graph[node]:
            if target not in seen:
                seen.add(target)
                reachable(target, seen)
        return seen

    assert not reachable("grubench.worker", set()) & above
