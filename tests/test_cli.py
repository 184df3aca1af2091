"""The command lines as transformers' example users type them: bare boolean flags, transformers' option names (the old
ones still accepted, with a warning), --do_train/--do_eval/--do_predict, refused --hub_* options, errors as a message
and exit status 2; and every command README shows parses with the flags it uses (README cannot drift from the code).
"""
import contextlib
import dataclasses
import io
import json
import os
import re
import shlex
import warnings

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bool_fields():
    from hcam.trainer.arguments import ARGUMENT_CLASSES

    return sorted({f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls)
                   if f.type in (bool, bool | None)})


def test_every_boolean_option_works_bare_and_with_a_value():
    from hcam.trainer.arguments import build_parser

    parser = build_parser()
    names = _bool_fields()
    assert {"freeze_audio_encoder", "freeze_text_encoder", "use_speaker_masks", "do_train", "skip_bad"} <= set(names)
    for name in names:
        default = parser.parse_args(["--output_dir", "x"]).__dict__[name]
        assert getattr(parser.parse_args(["--output_dir", "x", f"--{name}"]), name) is True, name
        assert getattr(parser.parse_args(["--output_dir", "x", f"--{name}", "false"]), name) is False, name
        assert getattr(parser.parse_args(["--output_dir", "x", f"--{name}", "true"]), name) is True, name
        assert default in (None, True, False), name


def test_readme_frozen_encoder_command_parses():
    """The issue's failing command: `--freeze_audio_encoder` typed bare."""
    from hcam.trainer.arguments import build_parser

    model_args, _, _ = build_parser().parse_args_into_dataclasses(
        ["--stage", "1", "--modality", "audio", "--freeze_audio_encoder", "--output_dir", "x"])
    assert model_args.freeze_audio_encoder is True and model_args.freeze_text_encoder is None


def test_transformers_names_first_and_old_names_warn():
    from hcam.processing.cli import FLAG_RENAMES
    from hcam.trainer.arguments import build_parser

    parser = build_parser()
    assert FLAG_RENAMES["--dataset_config"] == "--dataset_config_name"
    assert FLAG_RENAMES["--text_column"] == "--text_column_name"
    assert FLAG_RENAMES["--cache_dir"] == "--embedding_cache_dir"
    for old, new in FLAG_RENAMES.items():
        action = parser._option_string_actions[new]
        assert action.option_strings[0] == new and old in action.option_strings, (old, new)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            by_new = parser.parse_args_into_dataclasses(["--output_dir", "x", new, "v"])
        assert not [w for w in caught if issubclass(w.category, FutureWarning)], new
        with pytest.warns(FutureWarning, match=re.escape(f"{old} is deprecated") + ".*" + re.escape(new)):
            by_old = parser.parse_args_into_dataclasses(["--output_dir", "x", old, "v"])
        dest = action.dest
        assert [vars(a).get(dest) for a in by_new] == [vars(a).get(dest) for a in by_old]
        assert "v" in [vars(a).get(dest) for a in by_new]


def test_do_flags_choose_the_steps():
    from hcam.trainer.arguments import steps

    class Args:
        do_train = do_eval = do_predict = False

    def run(given=(), **values):
        args = Args()
        for key, value in values.items():
            setattr(args, key, value)
        return steps(args, given or set(values))

    assert run() == (True, ("validation", "test"))  # none given: train, then evaluate as every stage does
    assert run(do_train=True) == (True, ("validation", "test"))
    assert run(do_predict=True) == (False, ("test",))
    assert run(do_eval=True) == (False, ("validation",))
    assert run(do_eval=True, do_predict=True) == (False, ("validation", "test"))
    with pytest.raises(SystemExit, match="nothing to do"):
        run(do_train=False)


@pytest.mark.parametrize("flags, message", [
    (["--hub_strategy", "checkpoint"], "--hub_strategy checkpoint: not supported"),
    (["--hub_revision", "dev"], "--hub_revision dev: not supported"),
    (["--hub_always_push"], "--hub_always_push True: not supported"),
])
def test_hub_options_that_cannot_apply_are_refused(flags, message):
    from hcam.trainer.arguments import parse_args

    with pytest.raises(SystemExit, match=re.escape(message)):
        parse_args(["--stage", "1", "--modality", "text", "--dataset_name", "demo", "--output_dir", "x", *flags])
    parse_args(["--stage", "1", "--modality", "text", "--dataset_name", "demo", "--output_dir", "x",
                "--hub_strategy", "end"])  # what hcam does anyway


def test_errors_are_a_message_and_exit_status_2(capsys, monkeypatch, tmp_path):
    from hcam.processing.report import HCAMDataError
    from hcam.trainer.run_stage import cli

    monkeypatch.delenv("HCAM_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stopped:
        cli(["--stage", "2", "--modality", "text", "--dataset_name", "demo", "--output_dir", str(tmp_path / "o")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "run_stage.py: error: Stage 2 needs --init_from <stage1-text output folder>." in err
    assert "Traceback" not in err
    (tmp_path / "bad.csv").write_text("dialogue_id,turn,speaker,text\nd0,0,a,hello\n")  # no label column
    argv = ["--stage", "1", "--modality", "text", "--train_file", str(tmp_path / "bad.csv"), "--validation_file",
            str(tmp_path / "bad.csv"), "--output_dir", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as stopped:
        cli(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "run_stage.py: error:" in err and "label" in err and "HCAM_DEBUG=1" in err
    monkeypatch.setenv("HCAM_DEBUG", "1")
    with pytest.raises(HCAMDataError):
        cli(argv)


def test_do_predict_alone_evaluates_a_finished_stage(tmp_path, monkeypatch):
    from test_trainer import stage_argv, write_corpus, write_tiny_text_encoder

    from hcam.trainer.run_stage import main

    monkeypatch.setenv("HCAM_CACHE", str(tmp_path / "cache"))
    corpus, encoder, out = str(tmp_path / "corpus"), str(tmp_path / "bert"), str(tmp_path / "runs")
    write_corpus(corpus, dialogues={"train": 6, "validation": 3, "test": 3}, turns=3)
    write_tiny_text_encoder(encoder)
    argv = stage_argv(out, "stage1-text", corpus, encoder, epochs=1)
    stage = os.path.join(out, "stage1-text")
    with pytest.raises(SystemExit, match="holds no finished stage1-text"):
        main([*argv, "--do_predict"])
    main(argv)
    before = {name: open(os.path.join(stage, name), "rb").read()
              for name in ("all_results.json", "test_report.json", "hcam_stage.json", "README.md")}
    results = main([*argv, "--do_predict"])
    assert set(k.split("_")[0] for k in results) == {"test"}
    trained = json.load(open(os.path.join(stage, "all_results.json")))
    assert results["test_weighted_f1"] == pytest.approx(trained["test_weighted_f1"])  # the same model, the same data
    assert os.path.isfile(os.path.join(stage, "evaluation", "test_results.json"))
    assert os.path.isfile(os.path.join(stage, "evaluation", "test_report.json"))
    assert not os.path.exists(os.path.join(stage, "evaluation", "eval_results.json"))
    for name, content in before.items():  # the stage itself is left as its training wrote it
        assert open(os.path.join(stage, name), "rb").read() == content, name
    with pytest.raises(SystemExit, match="pushes a trained stage"):
        main([*argv, "--do_eval", "--push_to_hub", "--hub_model_id", "org/x"])


# ----- README --------------------------------------------------------------------------------------------------
# program as README writes it -> (module whose main(argv) parses its command line, programs whose flags it passes on)
PROGRAMS = {
    "trainer/run_stage.py": ("hcam.trainer.run_stage", ()),
    "trainer/run_cv.py": ("hcam.trainer.run_cv", ("trainer/run_stage.py",)),
    "trainer/run_demo.py": ("hcam.trainer.run_demo", ("trainer/run_stage.py",)),
    "hcam-predict": ("hcam.trainer.predict", ()),
    "hcam-data-check": ("hcam.processing.data_check", ()),
    "hcam.processing.data_check": ("hcam.processing.data_check", ()),
    "hcam-cache": ("hcam.processing.cache", ()),
    "hcam-app": ("hcam.trainer.app", ()),
}


def readme_commands():
    """(program, argv, elided) of every command README shows: in bash code blocks (continuation lines joined,
    comments dropped, the block's VAR=value assignments substituted) and in inline code spans; `elided`: the command
    has a "..." standing for more."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    snippets = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        variables = {}
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*", "", line)
            for part in line.split(";"):
                assignment = re.fullmatch(r"\s*([A-Z]+)=(\S+)\s*", part)
                if assignment:
                    variables[assignment.group(1)] = assignment.group(2)
                else:
                    snippets.append(re.sub(r"\$([A-Z]+)", lambda m: variables.get(m.group(1), m.group(0)), part))
    snippets += re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    commands = []
    for snippet in snippets:
        for piece in snippet.split("|"):
            try:
                words = shlex.split(piece.replace("[", " ").replace("]", " "))
            except ValueError:
                continue
            for index, word in enumerate(words):
                if word in PROGRAMS:
                    argv = [w for w in words[index + 1:] if w not in ("...", "…")]
                    commands.append((word, argv, len(argv) < len(words) - index - 1))
                    break
    return commands


def _help(module, argv):
    import importlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stopped:
        importlib.import_module(module).main([*argv, "--help"])
    assert stopped.value.code == 0, (module, argv)
    return out.getvalue()


def test_readme_shows_the_commands_this_test_knows():
    programs = {program for program, _, _ in readme_commands()}
    assert {"trainer/run_stage.py", "trainer/run_cv.py", "trainer/run_demo.py", "hcam-predict", "hcam-data-check",
            "hcam-cache", "hcam-app"} <= programs


def test_every_readme_command_uses_flags_its_program_has():
    """Each README command's program answers --help, and every --flag the command uses is one of its options (or of
    run_stage.py's, for the scripts that pass the rest on)."""
    scripts = re.findall(r'"(hcam-[a-z-]+)=', open(os.path.join(REPO, "setup.py"), encoding="utf-8").read())
    helps = {}
    problems = []
    for program, argv, _ in readme_commands():
        if program.startswith("hcam-"):
            assert program in scripts, f"README runs {program}, which setup.py does not install"
        module, passes_to = PROGRAMS[program]
        subcommand = [w for w in argv[:1] if not w.startswith("-")] if program == "hcam-cache" else []
        key = (module, tuple(subcommand))
        if key not in helps:
            helps[key] = _help(module, subcommand)
        known = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", helps[key]))
        for other in passes_to:
            other_key = (PROGRAMS[other][0], ())
            if other_key not in helps:
                helps[other_key] = _help(PROGRAMS[other][0], [])
            known |= set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", helps[other_key]))
        for word in argv:
            flag = word.split("=", 1)[0]
            if flag.startswith("--") and len(flag) > 2 and flag not in known:
                problems.append(f"{program}: {flag} ({' '.join(argv)})")
    assert not problems, "README uses flags its commands do not have:\n" + "\n".join(problems)


def test_readme_run_stage_commands_parse():
    """run_stage.py's README commands parse into its dataclasses as written (values and choices included)."""
    from hcam.trainer.arguments import build_parser

    commands = [argv for program, argv, elided in readme_commands() if program == "trainer/run_stage.py" and not elided
                and "--help" not in argv]
    assert len(commands) >= 10
    for argv in commands:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)  # README uses no deprecated name
            build_parser().parse_args_into_dataclasses(argv, look_for_args_file=False)


def test_model_revision_and_token_choose_the_hub_encoder(tmp_path, monkeypatch):
    """--model_revision picks the encoder's branch on the Hub (the local Hub fixture) and --token is sent, as in
    transformers' examples; the token never reaches the recorded command."""
    import huggingface_hub
    from local_hub import LocalHubServer
    from test_trainer import write_tiny_text_encoder
    from transformers import AutoConfig

    from hcam.processing.encoders import resolve_encoder_path
    from hcam.trainer.hub import command_line

    encoder = tmp_path / "bert"
    write_tiny_text_encoder(str(encoder))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "home" / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # the fixture speaks no Xet
    with LocalHubServer(tmp_path / "hub") as hub:
        api = huggingface_hub.HfApi(endpoint=hub.url, token="hf_secret")
        api.create_repo("org/tiny-bert")
        api.upload_folder(folder_path=str(encoder), repo_id="org/tiny-bert")
        api.create_branch("org/tiny-bert", branch="wide")
        config = AutoConfig.from_pretrained(str(encoder))
        config.intermediate_size = 41
        config.save_pretrained(str(tmp_path / "wide"))
        api.upload_file(path_or_fileobj=str(tmp_path / "wide" / "config.json"), path_in_repo="config.json",
                        repo_id="org/tiny-bert", revision="wide")
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert resolve_encoder_path("org/tiny-bert") == "org/tiny-bert"  # no revision/token: left to transformers
        main = resolve_encoder_path("org/tiny-bert", revision="main", token="hf_secret")
        wide = resolve_encoder_path("org/tiny-bert", revision="wide", token="hf_secret")
    assert AutoConfig.from_pretrained(main).intermediate_size == 37
    assert AutoConfig.from_pretrained(wide).intermediate_size == 41
    recorded = command_line(["--text_encoder", "org/tiny-bert", "--token", "hf_secret", "--model_revision", "wide"])
    assert "hf_secret" not in recorded and "--token '<HUB_TOKEN>'" in recorded


# ----- the defaults --help prints are the ones that apply ----------------------------------------------------------
SHOWN = ("learning_rate", "num_train_epochs", "per_device_train_batch_size", "early_stopping_patience",
         "cross_fit_folds", "embedding_noise", "report_to", "warmup_steps", "encoder_learning_rate", "seed")


def _help_defaults(argv):
    """{option: the default --help prints for it} for the SHOWN options."""
    from hcam.trainer.run_stage import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stopped:
        main([*argv, "--help"])
    assert stopped.value.code == 0
    entries = re.split(r"\n  (?=--)", out.getvalue())
    shown = {}
    for entry in entries:
        name = entry.split()[0].lstrip("-")
        if name in SHOWN:
            found = re.search(r"\(default: (.*)\)\s*$", " ".join(entry.split()))
            shown[name] = found.group(1) if found else None
    return shown


@pytest.mark.parametrize("recipe", [None, "trainer/recipes/demo.json"])
def test_help_prints_the_defaults_that_apply_for_every_stage(recipe, tmp_path):
    from hcam.trainer.arguments import parse_args
    from hcam.trainer.stages import SEQUENCE

    for stage in SEQUENCE:
        argv = stage.argv(str(tmp_path)) + (["--recipe", os.path.join(REPO, recipe)] if recipe else
                                            ["--dataset_name", "demo"])
        shown = _help_defaults(argv)
        _, _, training_args = parse_args(argv)
        assert set(shown) == set(SHOWN), (stage.tag, shown)
        applied = {name: str(getattr(getattr(training_args, name), "value", getattr(training_args, name)))
                   for name in SHOWN}
        assert shown == applied, (stage.tag, recipe)
        if stage.number > 1:  # the stage's own defaults, not the dataclass's (--cross_fit_folds 0 would be wrong)
            assert shown["cross_fit_folds"] == str(training_args.cross_fit_folds) != "0" or recipe


def test_help_says_what_an_unset_model_option_means():
    from hcam.trainer.run_stage import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--stage", "1", "--modality", "audio", "--help"])
    text = " ".join(out.getvalue().split())
    assert "Longer utterances are cut (seconds). (default: 15.0, HCAMConfig's)" in text
    assert "(default: None)" not in text.split("--max_audio_seconds")[1].split("--max_text_tokens")[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--stage", "2", "--modality", "text", "--help"])
    text = " ".join(out.getvalue().split())
    assert "Dropout of the GRU outputs and classifiers. (default: what the --init_from stage was trained with)" in text


def test_each_value_says_which_layer_set_it(tmp_path):
    from hcam.trainer.arguments import parse_args

    argv = ["--recipe", os.path.join(REPO, "trainer/recipes/demo.json"), "--stage", "2", "--modality", "text",
            "--init_from", str(tmp_path / "s1"), "--output_dir", str(tmp_path / "s2"), "--learning_rate", "0.01"]
    _, _, training_args = parse_args(argv)
    sources = training_args.hcam_value_sources
    assert sources["learning_rate"] == {"value": 0.01, "from": "flag"}
    assert sources["report_to"]["from"] == "stage default"
    recipe_keys = [k for k, v in sources.items() if v["from"].startswith("recipe ")]
    assert "dataset_name" in recipe_keys and sources["dataset_name"]["value"] == "demo"


def test_readme_is_a_guide_that_names_every_environment_variable():
    """README stays a guide (at most 250 lines; results live in RESULTS.md) and names every environment variable the
    code reads."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    assert text.count("\n") <= 250, "README is over 250 lines: move results and history to RESULTS.md"
    read = set()
    for folder in ("modeling_hcam", "processing", "trainer", "hub_cards", "bench"):
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            for name in files:
                if name.endswith(".py"):
                    code = open(os.path.join(root, name), encoding="utf-8").read()
                    read |= set(re.findall(r"environ(?:\.get\(|\[)\s*[\"']([A-Z][A-Z0-9_]+)[\"']", code))
    assert read, "no environment variable found: the pattern is wrong"
    missing = sorted(name for name in read if f"`{name}`" not in text)
    assert not missing, f"README does not name these environment variables: {missing}"
