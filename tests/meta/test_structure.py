"""The package's shape: one import name, no import cycles, no private names across modules, size limits."""

import ast
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from imports import ROOT, cycles, graph, modules

MODULE_LINES = 500
CLASS_LINES = 300


def test_no_module_imports_another_in_a_cycle():
    assert cycles(graph()) == [], "tunelab's import graph must be acyclic (see tests/meta/imports.py)"


def test_no_module_imports_the_private_names_of_another():
    found = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tunelab"):
                found += [f"{module}:{node.lineno} imports {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []


TRAINABLES = {"Trainer", "Replay", "Function", "Objective"}


def test_the_study_layer_never_asks_which_trainable_it_holds():
    """`studies/` talks to `trainers.Trainable` only: no isinstance(x, Trainer / Replay / Function / Objective)."""
    found = []
    for module, path in modules().items():
        if not module.startswith("tunelab.studies"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
                kinds = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
                names = {getattr(k, "attr", getattr(k, "id", None)) for k in kinds}
                if names & TRAINABLES:
                    found.append(f"{module}:{node.lineno}")
    assert found == []


def _says_why(doc: str | None) -> bool:
    return doc is not None and "Size:" in doc


def test_modules_and_classes_are_small_or_say_why():
    too_big = []
    for module, path in modules().items():
        text = path.read_text()
        tree = ast.parse(text)
        if text.count("\n") > MODULE_LINES and not _says_why(ast.get_docstring(tree)):
            too_big.append(f"module {module}: {text.count(chr(10))} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                if size > CLASS_LINES and not _says_why(ast.get_docstring(node)):
                    too_big.append(f"class {module}.{node.name}: {size} lines")
    assert too_big == [], f"over {MODULE_LINES} / {CLASS_LINES} lines without a 'Size:' reason in the docstring"


def test_the_package_imports_nothing_it_does_not_need_at_import_time():
    code = "import sys, tunelab; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tunelab')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "['tunelab']"  # the subpackages load on first use


def test_another_package_named_like_a_subpackage_does_not_break_tunelab(tmp_path):
    for name in ("spaces", "search", "trainers", "studies"):  # e.g. Hugging Face's `spaces` utilities
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the other {name} package')\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from tunelab import search, spaces, studies, trainers
        trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=1), epochs=1)
        study = studies.create("s", "sqlite:///{tmp_path / 's.db'}", trainer=trainer,
                               space=spaces.optimizers(["adamw"]) | spaces.mlp(depth=1, width=8))
        study.optimize(trials=2, progress=False)
        print("trials:", len(study.trials))
        try:
            import spaces
        except ImportError as err:
            print("import spaces:", err)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "trials: 2" in done.stdout  # tunelab never imported the other packages...
    assert "import spaces: the other spaces package" in done.stdout  # ...which are what `import spaces` finds


def _wheel(tmp_path: Path) -> Path:
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("tunelab-*.whl")
    return wheel


def test_the_wheel_installs_one_top_level_name(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel without isolation needs setuptools")
    with zipfile.ZipFile(_wheel(tmp_path)) as zf:
        names = zf.namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"tunelab"}
    for package in ("spaces", "search", "trainers", "studies", "studies/driver", "studies/storage",
                    "studies/compare", "studies/executors"):
        assert f"tunelab/{package}/__init__.py" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "tunelab/tests/", "tunelab/benchmarks/")) for n in names)


@pytest.mark.slow
def test_a_wheel_in_a_fresh_virtual_environment_runs_a_study_outside_the_checkout(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel without isolation needs setuptools")
    wheel = _wheel(tmp_path)
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    py = env_dir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies come from this interpreter's site-packages, added as a plain path: its .pth files (the
    # editable install of this checkout among them) are not processed, so only the wheel provides tunelab
    here = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "deps.pth").write_text("\n".join(here) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   timeout=300)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    script = textwrap.dedent("""
        import importlib.util, tunelab
        from tunelab import search, spaces, studies, trainers
        assert all(importlib.util.find_spec(n) is None for n in ("spaces", "search", "trainers", "studies"))
        trainer = trainers.Trainer(trainers.workloads.mnist1d(n_train=256, max_epochs=1), epochs=1)
        study = studies.create("w", "sqlite:///w.db", trainer=trainer,
                               space=spaces.optimizers(["adamw"]) | spaces.mlp(depth=1, width=8))
        study.optimize(trials=2, progress=False)
        print(tunelab.__file__, len(study.trials))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(py), "-c", script], capture_output=True, text=True, cwd=outside, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    where, n = done.stdout.split()
    assert where.startswith(site) and n == "2"
