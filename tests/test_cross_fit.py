"""Stages II/III on stage-I embeddings that look like test-time ones: out-of-fold (cross-fitted) embeddings of train,
and noise/dropout on the cached embeddings (hcam.trainer.cross_fit)."""

import os

import pytest
import torch
from safetensors.torch import load_file
from test_trainer import stage_argv, write_corpus, write_tiny_text_encoder

from hcam.trainer.cross_fit import dialogue_folds, fit_alignment
from hcam.trainer.trainer import perturb_embeddings


def test_folds_hold_whole_dialogues_and_are_reproducible():
    ids = [d for d in "abcdefg" for _ in range(3)]
    folds = dialogue_folds(ids, 3, seed=0)
    assert folds == dialogue_folds(ids, 3, seed=0)
    for dialogue in set(ids):
        assert len({f for d, f in zip(ids, folds) if d == dialogue}) == 1  # a dialogue never straddles folds
    assert sorted(set(folds)) == [0, 1, 2]
    sizes = sorted(len({d for d, f in zip(ids, folds) if f == k}) for k in range(3))
    assert sizes == [2, 2, 3]
    assert dialogue_folds(ids, 3, seed=1) != folds or dialogue_folds(ids, 3, seed=2) != folds
    with pytest.raises(ValueError, match="cross_fit_folds=8"):
        dialogue_folds(ids, 8)
    with pytest.raises(ValueError, match="cross_fit_folds=1"):
        dialogue_folds(ids, 1)


def test_perturbation_spares_padding_and_is_off_by_default():
    embeddings = torch.randn(2, 3, 10)
    embeddings[1, 2] = 0  # a padded turn
    batch = {"text_embeddings": embeddings, "labels": torch.zeros(2, 3, dtype=torch.long)}
    assert perturb_embeddings(batch) is batch
    noisy = perturb_embeddings(batch, noise=0.5)["text_embeddings"]
    assert torch.equal(noisy[1, 2], torch.zeros(10))
    relative = ((noisy - embeddings)[0].pow(2).mean(-1) / embeddings[0].pow(2).mean(-1)).sqrt()
    assert 0.2 < relative.mean() < 1.0  # about 0.5 of each embedding's RMS
    assert torch.equal(batch["text_embeddings"], embeddings)  # the cached tensor is not modified in place
    dropped = perturb_embeddings(batch, dropout=0.5)["text_embeddings"]
    assert 0.3 < (dropped[0] == 0).float().mean() < 0.7


def test_alignment_recovers_an_affine_map_and_reports_its_fit():
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(300, 8, generator=generator)
    mapping, shift = torch.randn(8, 8, generator=generator), torch.randn(8, generator=generator)
    weight, r2 = fit_alignment(source, source @ mapping + shift)
    assert r2 > 0.99
    assert torch.allclose(torch.cat([source, torch.ones(300, 1)], 1) @ weight, source @ mapping + shift, atol=0.05)
    _, unrelated = fit_alignment(source, torch.randn(300, 8, generator=generator))
    assert unrelated < 0.2


@pytest.fixture(scope="module")
def stage1_text(tmp_path_factory):
    from hcam.trainer.run_stage import main

    root = tmp_path_factory.mktemp("cross_fit")
    corpus, encoder, out = str(root / "corpus"), str(root / "tiny_bert"), str(root / "runs")
    write_corpus(corpus)
    write_tiny_text_encoder(encoder)
    with pytest.MonkeyPatch.context() as patch:  # a cache root of this module's own
        patch.setenv("HCAM_CACHE", str(root / "hcam_cache"))
        main(stage_argv(out, "stage1-text", corpus, encoder, epochs=2))
        yield {"corpus": corpus, "encoder": encoder, "out": out, "cache": str(root / "hcam_cache" / "embeddings")}


def test_stage2_trains_on_out_of_fold_embeddings_and_reuses_them(stage1_text, monkeypatch):
    from hcam.trainer import cross_fit
    from hcam.trainer.run_stage import main

    corpus, encoder, out = stage1_text["corpus"], stage1_text["encoder"], stage1_text["out"]
    cache = stage1_text["cache"]
    main(stage_argv(out, "stage2-text", corpus, encoder, epochs=2, extra=["--cross_fit_folds", "3"]))
    files = sorted(os.listdir(cache))
    oof = [f for f in files if "-oof3-" in f]
    plain = {split: [f for f in files if f.startswith(f"{split}-text-") and "-oof" not in f] for split in ("train", "validation", "test")}
    assert len(oof) == 1 and oof[0].startswith("train-text-"), files
    # the shipped model's own train embeddings are cached too: the fold models' coordinates are mapped into theirs
    assert len(plain["train"]) == 1 and len(plain["validation"]) == 1 and len(plain["test"]) == 1, files
    assert not [f for f in files if f.startswith(".fold-")]  # fold scratch folders are removed

    # the out-of-fold embeddings are not the shipped stage-I model's: each fold model saw other dialogues
    from hcam.modeling_hcam import HCAMForEmotionRecognition
    from hcam.trainer.data import load_splits
    from hcam.trainer.embedding_cache import compute_embeddings
    from transformers import AutoProcessor

    class Data:
        dataset_name, data_dir, dataset_config = None, None, None
        train_file, validation_file, test_file = (f"{corpus}/{s}.csv" for s in ("train", "validation", "test"))
        max_train_samples = max_eval_samples = None

    rows = load_splits(Data, ["text"])["train"]
    shipped = HCAMForEmotionRecognition.from_pretrained(f"{out}/stage1-text")
    processor = AutoProcessor.from_pretrained(f"{out}/stage1-text", trust_remote_code=True)
    own = compute_embeddings(shipped, processor, rows, "text")
    cross_fitted = load_file(os.path.join(cache, oof[0]))["embeddings"]
    assert cross_fitted.shape == own.shape
    assert not (cross_fitted == 0).all(-1).any()  # every training turn was embedded by one fold model
    assert not torch.allclose(cross_fitted, own, atol=1e-3)
    # ... but, aligned, they live in its coordinates: nearer the same turn's shipped embedding than another turn's
    shuffled = own[torch.randperm(len(own), generator=torch.Generator().manual_seed(0))]
    assert (cross_fitted - own).norm(dim=1).mean() < 0.8 * (cross_fitted - shuffled).norm(dim=1).mean()

    # a second stage 2 with the same k reads the cache: no fold model is trained again
    def no_training(*args, **kwargs):
        raise AssertionError("fold models retrained although the cross-fitted cache exists")

    monkeypatch.setattr(cross_fit, "train_fold_model", no_training)
    argv = stage_argv(out, "stage2-text", corpus, encoder, epochs=1, extra=["--cross_fit_folds", "3", "--seed", "7"])
    argv[argv.index("--output_dir") + 1] = f"{out}/stage2-text-again"
    main(argv)
    assert sorted(os.listdir(cache)) == files


def test_cross_fitting_needs_the_stage1_folder(tmp_path):
    from hcam.trainer.cross_fit import stage1_folder_of

    class Args:
        stage, init_from = 3, [str(tmp_path / "missing-stage2-audio"), str(tmp_path / "missing-stage2-text")]

    with pytest.raises(SystemExit, match="--cross_fit_folds 0"):
        stage1_folder_of(Args, "text")
