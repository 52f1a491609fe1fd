"""No code runs from a shared file: the package source is read (``ast``, nothing imported) and searched for
the calls that would let one.

Every ``.py`` under ``hwnas/``, ``devices/``, ``latency_tables/``, ``predictors/``, ``exporters/`` and
``benchmarks/`` must have:

- no ``subprocess`` call (or any call) with ``shell=`` anything but ``False``; no ``os.system`` / ``os.popen`` /
  ``subprocess.getoutput`` or other helper that runs a shell;
- every external command bounded: each ``subprocess.run`` / ``call`` / ``check_call`` / ``check_output`` passes a
  ``timeout=`` (not ``None``), and each ``subprocess.Popen`` (which takes none) is one of the few listed in
  ``UNBOUNDED_ALLOWED``, each with the reason its use is bounded;
- no unpickling: ``pickle.load(s)``, ``pickle.Unpickler``, ``joblib.load``, ``cloudpickle`` / ``dill`` loads,
  ``pandas.read_pickle``, ``numpy.load(allow_pickle=True)``;
- no ``yaml.load`` (or ``load_all``) unless its ``Loader`` is ``SafeLoader``-derived, and no ``unsafe_load``,
  ``full_load`` or unsafe loader class;
- every ``torch.load`` with ``weights_only=True``;
- no ``eval(`` / ``exec(`` (a module's ``.eval()`` method is not the builtin and is fine).

Names are resolved through each module's imports (``from pickle import loads as l``, ``import numpy as np``),
so an alias does not hide a call. The checker is itself tested on small snippets, one per rule, that it
must flag, and on safe look-alikes it must not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("hwnas", "devices", "latency_tables", "predictors", "exporters", "benchmarks")

UNPICKLERS = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "_pickle.load",
    "_pickle.loads",
    "joblib.load",
    "cloudpickle.load",
    "cloudpickle.loads",
    "dill.load",
    "dill.loads",
    "dill.Unpickler",
    "pandas.read_pickle",
    "shelve.open",
    "marshal.load",
    "marshal.loads",
}
SHELLS = {
    "os.system",
    "os.popen",
    "commands.getoutput",
    "commands.getstatusoutput",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
    "asyncio.create_subprocess_shell",
}
NEED_TIMEOUT = {"subprocess.run", "subprocess.call", "subprocess.check_call", "subprocess.check_output"}
NO_TIMEOUT_PARAMETER = {"subprocess.Popen", "asyncio.create_subprocess_exec"}  # bounded by how they are used, or not at all
# (file, enclosing function) -> why its Popen cannot outlive its purpose. Every entry must still be needed.
UNBOUNDED_ALLOWED = {
    ("benchmarks/latency_any.py", "busy_core"): (
        "a spinning load process for one drift check, terminated and waited for (timeout=10) in a finally"
    ),
    ("benchmarks/kill_harness.py", "start_and_kill"): (
        "the command under test: waited for at most the drawn kill moment, then its process group is SIGKILLed; "
        "a finally kills it on any error"
    ),
}
UNSAFE_YAML = {"yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load", "yaml.full_load_all"}
UNSAFE_YAML_LOADERS = {
    "yaml.Loader",
    "yaml.UnsafeLoader",
    "yaml.FullLoader",
    "yaml.CLoader",
    "yaml.CFullLoader",
    "yaml.CUnsafeLoader",
}
SAFE_YAML_LOADERS = {"yaml.SafeLoader", "yaml.CSafeLoader", "yaml.BaseLoader", "yaml.CBaseLoader"}
EXEC_BUILTINS = {"eval", "exec", "builtins.eval", "builtins.exec"}


class Checker(ast.NodeVisitor):
    """Collects ``(line, rule, text)`` for every unsafe call in one module."""

    def __init__(self, tree: ast.Module) -> None:
        self.aliases: dict[str, str] = {}
        self.functions: dict[str, ast.FunctionDef] = {}
        self.classes: dict[str, ast.ClassDef] = {}
        self.found: list[tuple[int, str, str]] = []
        self.scopes: list[str] = []  # enclosing functions, innermost last
        self.unbounded: list[tuple[int, str, str]] = []  # (line, enclosing function, code) of each "no timeout"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.aliases[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.FunctionDef):
                self.functions.setdefault(node.name, node)
            elif isinstance(node, ast.ClassDef):
                self.classes.setdefault(node.name, node)
        self.visit(tree)

    def qualified(self, node: ast.AST) -> str | None:
        """``np.load`` -> ``numpy.load``; ``loads`` (from pickle) -> ``pickle.loads``; None for anything else."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualified(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def flag(self, node: ast.AST, rule: str) -> None:
        self.found.append((getattr(node, "lineno", 0), rule, ast.unparse(node)[:120]))

    def visit_Call(self, node: ast.Call) -> None:
        name = self.qualified(node.func) or ""
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        shell = keywords.get("shell")
        if shell is not None and not (isinstance(shell, ast.Constant) and shell.value is False):
            self.flag(node, "shell=True")
        if name in SHELLS or name.startswith(("os.spawn", "os.exec")):
            self.flag(node, "os.system")
        if name in NEED_TIMEOUT or name in NO_TIMEOUT_PARAMETER:
            timeout = keywords.get("timeout")
            if name in NO_TIMEOUT_PARAMETER or timeout is None or (isinstance(timeout, ast.Constant) and timeout.value is None):
                self.flag(node, "no timeout")
                self.unbounded.append((node.lineno, self.scopes[-1] if self.scopes else "<module>", ast.unparse(node)[:120]))
        if name in UNPICKLERS or (name.startswith(("cloudpickle.", "dill.")) and "load" in name):
            self.flag(node, "unpickle")
        if name == "numpy.load" and not _is_false(keywords.get("allow_pickle", ast.Constant(False))):
            self.flag(node, "unpickle")
        if name in UNSAFE_YAML:
            self.flag(node, "yaml.load")
        if name in ("yaml.load", "yaml.load_all"):
            loader = keywords.get("Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or not self.safe_loader(loader):
                self.flag(node, "yaml.load")
        if name == "torch.load":
            weights_only = keywords.get("weights_only")
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                self.flag(node, "torch.load")
        if name in EXEC_BUILTINS:
            self.flag(node, "eval/exec")
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scopes.append(node.name)
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if self.qualified(node) in UNSAFE_YAML_LOADERS:
            self.flag(node, "yaml.load")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if self.aliases.get(node.id) in UNSAFE_YAML_LOADERS:
            self.flag(node, "yaml.load")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if any(self.qualified(base) in ("pickle.Unpickler", "_pickle.Unpickler", "dill.Unpickler") for base in node.bases):
            self.flag(node, "unpickle")
        self.generic_visit(node)

    def safe_loader(self, node: ast.AST, depth: int = 0) -> bool:
        """``yaml.SafeLoader``, a class of this module derived from one, or a local function returning such a class."""
        if depth > 5:
            return False
        if self.qualified(node) in SAFE_YAML_LOADERS:
            return True
        if isinstance(node, ast.Name) and node.id in self.classes:
            return all(self.safe_loader(base, depth + 1) for base in self.classes[node.id].bases) and bool(
                self.classes[node.id].bases
            )
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self.functions:
            returns = [value for value in _own_returns(self.functions[node.func.id]) if value is not None]
            return bool(returns) and all(self.safe_loader(value, depth + 1) for value in returns)
        return False


def _own_returns(function: ast.FunctionDef) -> list[ast.expr | None]:
    """The values ``function`` itself returns (not those of functions or classes defined inside it)."""
    found: list[ast.expr | None] = []
    pending: list[ast.AST] = list(function.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Return):
            found.append(node.value)
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))
    return found


def _is_false(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def violations(source: str) -> list[tuple[int, str, str]]:
    return Checker(ast.parse(source)).found


def package_files() -> list[Path]:
    return sorted(path for folder in FOLDERS for path in (REPO / folder).rglob("*.py"))


def test_the_package_source_has_no_way_to_run_code_from_a_file() -> None:
    files = package_files()
    assert len(files) > 100 and any(path.name == "fileio.py" for path in files)  # the walk found the package
    found, allowed = [], set()
    for path in files:
        name = path.relative_to(REPO).as_posix()
        checker = Checker(ast.parse(path.read_text(encoding="utf-8")))
        excused = {line for line, scope, _ in checker.unbounded if (name, scope) in UNBOUNDED_ALLOWED}
        allowed |= {(name, scope) for _, scope, _ in checker.unbounded if (name, scope) in UNBOUNDED_ALLOWED}
        found += [
            f"{name}:{line}: {rule}: {text}"
            for line, rule, text in checker.found
            if not (rule == "no timeout" and line in excused)
        ]
    assert found == [], "\n".join(found)
    assert allowed == set(UNBOUNDED_ALLOWED), f"no longer needed, remove: {set(UNBOUNDED_ALLOWED) - allowed}"


def test_external_commands_are_run_from_lists_with_a_timeout() -> None:
    """The package's own external commands (adb on a phone): found by the walk, each bounded."""
    calls = [
        (path.relative_to(REPO).as_posix(), node)
        for path in package_files()
        if path.parts[len(REPO.parts)] != "benchmarks"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and ast.unparse(node.func).startswith("subprocess.")
    ]
    assert [name for name, _ in calls] == ["devices/backends/android_adb.py"]  # adb: the one program hwnas runs
    for _, node in calls:
        keywords = {k.arg for k in node.keywords}
        assert "timeout" in keywords and not isinstance(node.args[0], ast.Constant | ast.JoinedStr), ast.unparse(node)


def test_the_safe_yaml_reader_is_recognised_and_used() -> None:
    """fileio's duplicate-refusing loader is a SafeLoader subclass the checker accepts, not one it skips."""
    source = (REPO / "hwnas" / "fileio.py").read_text()
    tree = ast.parse(source)
    loads = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "yaml.load"]
    assert len(loads) == 1 and violations(source) == []
    assert violations(source.replace("(yaml.SafeLoader)", "(yaml.FullLoader)"))  # the same code on an unsafe base fails


BAD = {
    "subprocess shell=True": ("import subprocess\nsubprocess.run('ls', shell=True)", "shell=True"),
    "Popen shell=variable": ("from subprocess import Popen\nPopen(cmd, shell=flag)", "shell=True"),
    "os.system": ("import os\nos.system('ls')", "os.system"),
    "os.popen": ("import os\nos.popen('ls').read()", "os.system"),
    "from os import system": ("from os import system\nsystem('ls')", "os.system"),
    "os.execv": ("import os\nos.execv('/bin/sh', ['sh'])", "os.system"),
    "pickle.load": ("import pickle\npickle.load(open(p, 'rb'))", "unpickle"),
    "pickle.loads alias": ("from pickle import loads as read\nread(data)", "unpickle"),
    "pickle.Unpickler": ("import pickle\npickle.Unpickler(f).load()", "unpickle"),
    "Unpickler subclass": ("import pickle\nclass U(pickle.Unpickler):\n    pass", "unpickle"),
    "joblib.load": ("import joblib\njoblib.load('model.joblib')", "unpickle"),
    "cloudpickle.loads": ("import cloudpickle\ncloudpickle.loads(b)", "unpickle"),
    "dill.load": ("import dill as d\nd.load(f)", "unpickle"),
    "pandas.read_pickle": ("import pandas as pd\npd.read_pickle('x.pkl')", "unpickle"),
    "numpy allow_pickle": ("import numpy as np\nnp.load('a.npy', allow_pickle=True)", "unpickle"),
    "yaml.load no Loader": ("import yaml\nyaml.load(text)", "yaml.load"),
    "yaml.load FullLoader": ("import yaml\nyaml.load(text, Loader=yaml.FullLoader)", "yaml.load"),
    "yaml.load positional Loader": ("import yaml\nyaml.load(text, yaml.Loader)", "yaml.load"),
    "yaml.unsafe_load": ("import yaml\nyaml.unsafe_load(text)", "yaml.load"),
    "yaml.full_load": ("import yaml\nyaml.full_load(text)", "yaml.load"),
    "yaml loader subclass of Loader": (
        "import yaml\nclass L(yaml.Loader):\n    pass\nyaml.load(text, Loader=L)",
        "yaml.load",
    ),
    "yaml loader from a function returning unsafe": (
        "import yaml\ndef make():\n    return yaml.UnsafeLoader\nyaml.load(text, Loader=make())",
        "yaml.load",
    ),
    "torch.load no weights_only": ("import torch\ntorch.load('m.pt')", "torch.load"),
    "torch.load weights_only=False": ("import torch\ntorch.load('m.pt', weights_only=False)", "torch.load"),
    "torch.load weights_only variable": ("from torch import load\nload('m.pt', weights_only=safe)", "torch.load"),
    "subprocess.run without timeout": ("import subprocess\nsubprocess.run(['adb', 'devices'])", "no timeout"),
    "check_output timeout=None": ("import subprocess\nsubprocess.check_output(cmd, timeout=None)", "no timeout"),
    "call alias without timeout": ("from subprocess import call as c\nc(['ls'])", "no timeout"),
    "Popen": ("import subprocess\nsubprocess.Popen(['adb', 'logcat'])", "no timeout"),
    "subprocess.getoutput": ("import subprocess\nsubprocess.getoutput('ls')", "os.system"),
    "asyncio shell": ("import asyncio\nasyncio.create_subprocess_shell('ls')", "os.system"),
    "eval": ("eval(text)", "eval/exec"),
    "exec": ("exec(code, {})", "eval/exec"),
    "builtins.eval": ("import builtins\nbuiltins.eval(text)", "eval/exec"),
}

GOOD = {
    "subprocess list, shell=False": "import subprocess\nsubprocess.run(['adb', 'devices'], shell=False, timeout=5)",
    "check_output with a timeout": "from subprocess import check_output\ncheck_output(['git', 'log'], timeout=limit)",
    "module.eval()": "model.eval()\nmodule = copy.deepcopy(m).eval()",
    "yaml.safe_load": "import yaml\nyaml.safe_load(text)",
    "yaml.load SafeLoader": "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
    "yaml loader factory": (
        "import yaml\ndef make():\n    class U(yaml.SafeLoader):\n        pass\n    return U\nyaml.load(text, Loader=make())"
    ),
    "torch.load weights_only": "import torch\ntorch.load('m.pt', map_location='cpu', weights_only=True)",
    "numpy.load default": "import numpy as np\nnp.load('a.npz')",
    "json.loads": "import json\njson.loads(text)",
    "a method called load": "store.load(path)\nsession.system = 3",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_the_checker_flags_each_unsafe_call(name: str) -> None:
    source, rule = BAD[name]
    assert rule in {found_rule for _, found_rule, _ in violations(source)}, violations(source)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_the_checker_passes_safe_look_alikes(name: str) -> None:
    assert violations(GOOD[name]) == []
