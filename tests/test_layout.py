"""The built wheel holds product code only, and no product file grows past what one reader can hold."""
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCE_FOLDERS = ("modeling_hcam", "processing", "trainer", "hub_cards")  # setup.py's, installed under hcam.
MAX_LINES = 700
LONGER_ALLOWED = {"hcam/modeling_hcam/modeling_hcam.py"}  # the Hub bundle's model: one file, as in transformers
NOT_PRODUCT = ("tests/", "demo_corpus", "generate.py", "conftest", "tiny.py", "test_", "bench", "data/demo")


def tracked_files():
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split("\n")
    return [name for name in listed if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """`pip wheel --no-deps .` of a copy of the working tree (the build leaves build/ and egg-info behind)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to know the source files")
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                            str(source), "-w", str(out)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (path,) = out.glob("hcam-*.whl")
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_wheel_holds_product_code_only(wheel):
    product = [name for name in wheel if ".dist-info/" not in name]
    outside = [name for name in product if not name.startswith(tuple(f"hcam/{f}/" for f in SOURCE_FOLDERS))]
    assert not outside, f"files outside hcam/{{{','.join(SOURCE_FOLDERS)}}}/: {outside}"
    fixtures = [name for name in product if any(word in name for word in NOT_PRODUCT)]
    assert not fixtures, f"test fixtures, benchmarks or the demo generator in the wheel: {fixtures}"
    # and it is the product: the model bundle, the trainer, the card template, the recipes
    for needed in ("hcam/modeling_hcam/modeling_hcam.py", "hcam/trainer/run_stage.py", "hcam/hub_cards/push.py",
                   "hcam/hub_cards/templates/model_card.md.j2", "hcam/trainer/recipes/demo.json"):
        assert needed in product, needed


def test_no_product_file_is_over_700_lines(wheel):
    long = {name: text.count(b"\n") for name, text in wheel.items()
            if name.endswith(".py") and name not in LONGER_ALLOWED and text.count(b"\n") > MAX_LINES}
    assert not long, f"split these files (over {MAX_LINES} lines): {long}"


def test_repository_layout_keeps_fixtures_out_of_the_source_folders():
    for folder in SOURCE_FOLDERS:
        for path in (REPO / folder).rglob("*.py"):
            assert not any(word in path.name for word in ("test_", "conftest", "tiny.py")), path
    assert (REPO / "tests" / "local_hub.py").is_file()
    assert os.path.isfile(REPO / "constraints.txt")


def test_nothing_outside_tests_imports_from_tests():
    """bench/, the product folders and the demo use nothing of tests/ (no sys.path into it, no fixture module)."""
    fixtures = {path.stem for path in (REPO / "tests").glob("*.py")}
    pattern = re.compile(r"^\s*(?:from|import)\s+(" + "|".join(map(re.escape, sorted(fixtures))) + r")\b"
                         r"|[\"']tests[\"']", re.M)
    offenders = []
    for folder in (*SOURCE_FOLDERS, "bench", "data"):
        for path in (REPO / folder).rglob("*.py"):
            for match in pattern.finditer(path.read_text(encoding="utf-8")):
                offenders.append(f"{path.relative_to(REPO)}: {match.group(0).strip()}")
    assert not offenders, "code outside tests/ reaching into it:\n" + "\n".join(offenders)


def test_product_modules_import_each_other_without_a_cycle():
    """Imports between hcam's modules, at module level or inside functions, form no cycle (labels <-> corpora and
    run_stage <-> cross_fit were two): each concept has a home that the others import, never the other way round."""
    import ast

    graph = {}
    for folder in SOURCE_FOLDERS:
        for path in (REPO / folder).rglob("*.py"):
            package = ["hcam", *path.relative_to(REPO).with_suffix("").parts]
            module = ".".join(package[:-1] if package[-1] == "__init__" else package)
            imports = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # inside functions too
                if isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        parent = package[:-node.level]
                        base = ".".join(parent + ([base] if base else []))
                    names = [base] + [f"{base}.{alias.name}" for alias in node.names]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                imports |= {name for name in names if name.startswith("hcam.")}
            graph[module] = imports
    graph = {module: {target for target in targets if target in graph and target != module}
             for module, targets in graph.items()}

    def cycle_from(start, path, seen):
        for target in sorted(graph[start]):
            if target == path[0]:
                return path + [target]
            if target not in seen:
                seen.add(target)
                found = cycle_from(target, path + [target], seen)
                if found:
                    return found
        return None

    for module in sorted(graph):
        found = cycle_from(module, [module], {module})
        assert not found, "import cycle: " + " -> ".join(found)
