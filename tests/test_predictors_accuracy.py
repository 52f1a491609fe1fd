"""FBNetV3 accuracy predictor: encoding, FLOPs/params pre-training, fitting on the measured pairs, persistence."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from hwnas.builder import arch_cost
from hwnas.errors import UserError
from hwnas.predictors.accuracy import AccuracyPredictor, encode, read_pairs, sample_recipe
from hwnas.presets import get_space
from hwnas.recipe import Recipe

REPO = Path(__file__).resolve().parents[1]
PAIRS = REPO / "predictors" / "data" / "accuracy-pairs-default.json"
SMALL = {"pretrain_samples": 600, "pretrain_epochs": 30, "head_epochs": 60, "finetune_epochs": 60}


@pytest.fixture(scope="module")
def space():
    return get_space("default")


def test_encoding_is_fixed_length_and_tells_candidates_apart(space):
    rng = random.Random(0)
    vectors = [encode(space, space.sample(rng), sample_recipe(rng)) for _ in range(50)]
    assert len({len(v) for v in vectors}) == 1
    assert len({v.tobytes() for v in vectors}) == 50
    arch = space.sample(1)
    assert not np.array_equal(encode(space, arch, Recipe()), encode(space, arch, Recipe(lr=0.05)))
    assert all(np.all(np.abs(v) <= 1.5) for v in vectors)  # scaled: no feature dwarfs the others


def test_pretraining_learns_flops_from_free_labels(space):
    predictor = AccuracyPredictor(space, **SMALL).pretrain()
    rng = random.Random(123)
    archs = [space.sample(rng) for _ in range(200)]
    recipes = [sample_recipe(rng) for _ in archs]
    with torch.no_grad():
        proxy = predictor.net_.proxy_head(predictor.net_.encoder(predictor._encode(archs, recipes))).numpy()
    flops = [arch_cost(space, arch).flops for arch in archs]
    assert kendalltau(proxy[:, 0], flops).statistic > 0.8


def test_fit_predict_save_load_on_the_measured_pairs(tmp_path, space):
    archs, recipes, accuracy, how = read_pairs(PAIRS, space)
    assert len(archs) >= 10 and how["epochs"] >= 1 and "command" in how
    predictor = AccuracyPredictor(space, **SMALL).fit(archs, recipes, accuracy)
    predicted = predictor.predict(archs, recipes)
    assert predicted.shape == (len(archs),)
    assert kendalltau(predicted, accuracy).statistic > 0.5  # it can at least fit what it was shown
    path = predictor.save(tmp_path / "acc.pt")
    loaded = AccuracyPredictor.load(path, space)
    assert np.allclose(loaded.predict(archs, recipes), predicted)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(UserError, match="does not match its sidecar"):
        AccuracyPredictor.load(path, space)
    with pytest.raises(UserError, match=r"another device or space .*space hash: \w+ \(default\)"):
        AccuracyPredictor.load(path, get_space("mnasnet"))
