"""The demo: its synthetic task is learnable, and a short run logs what TensorBoard will show."""

import numpy as np
import json
import pytest
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.util import tensor_util

import tb_layerdyn
from tb_layerdyn.format import layer_metrics
from tb_layerdyn.format import envelope as metadata
import layerdyn_helpers

torch = pytest.importorskip("torch")

from demo import __main__ as demo  # noqa: E402  (needs torch)
from demo import data  # noqa: E402
from demo import interpolation  # noqa: E402
from demo import train  # noqa: E402
from tb_layerdyn.sweeps import make_eval_fn  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Runs these small models on one intra-op thread. On a shared two-core machine OpenMP's
    synchronisation costs far more than the work when the other core is busy: this module took
    287 s on two threads and 19 s on one, back to back under load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_glyphs_are_reproducible_and_cover_every_class():
    images, labels = data.glyphs(200, seed=3)
    again, again_labels = data.glyphs(200, seed=3)
    other, _ = data.glyphs(200, seed=4)
    assert images.shape == (200, 1, 32, 32) and images.dtype == torch.float32
    assert torch.equal(images, again) and torch.equal(labels, again_labels)
    assert not torch.equal(images, other)
    assert set(labels.tolist()) == set(range(data.NUM_CLASSES))
    assert abs(images.mean().item()) < 1e-4 and abs(images.std().item() - 1) < 1e-4


def test_glyphs_do_not_touch_the_global_rng():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    data.glyphs(10, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_bad_sizes_name_the_argument():
    with pytest.raises(ValueError, match="count"):
        data.glyphs(0)
    images, labels = data.glyphs(8)
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(images, labels, 9, seed=0))


def test_lenet_learns_the_task_well_above_chance(tmp_path):
    train_set = data.glyphs(1024, seed=0)
    test_set = data.glyphs(256, seed=1)
    before = train.accuracy(train.DEMO_MODELS["lenet5"].factory(), *test_set)
    after = train.train_run(
        "lenet5", 0, str(tmp_path / "run"), train_set, test_set, steps=100, sweeps=False
    )
    assert before < 0.25
    assert after > 0.5, f"accuracy {after:.2f} after 100 steps: the demo task does not learn"


def test_demo_writes_every_run_with_groups_and_user_scalars(tmp_path, capsys, monkeypatch):
    steps = 12
    # Smaller data sets than the demo's keep this test fast; the task is the same.
    monkeypatch.setattr(demo, "TRAIN_IMAGES", 256)
    monkeypatch.setattr(demo, "TEST_IMAGES", 128)
    demo.main(["--logdir", str(tmp_path), "--no-tensorboard", "--steps", str(steps)])
    assert "test accuracy" in capsys.readouterr().out

    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={"scalars": 0, metadata.PLUGIN_NAME: 0}
    )
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    expected_runs = {f"{name}-seed{seed}" for name in train.DEMO_MODELS for seed in demo.SEEDS}
    assert set(multiplexer.Runs()) == expected_runs
    for run in expected_runs:
        tags = multiplexer.GetAccumulator(run).Tags()
        assert {"loss/train", "accuracy/test"} <= set(tags["tensors"])
        loss = [
            float(tensor_util.make_ndarray(event.tensor_proto))
            for event in multiplexer.Tensors(run, "loss/train")
        ]
        assert len(loss) == steps and np.isfinite(loss).all()
        merged = layerdyn_helpers.multiplexer_table(multiplexer, run)
        assert merged.steps.tolist() == list(range(steps + 1))
        model = run.split("-seed")[0]
        user_groups = {g["name"]: g["members"] for g in merged.groups if g["kind"] == "user"}
        assert user_groups == train.DEMO_MODELS[model].groups
        # Step 0 holds the initial weights: nothing has moved yet; afterwards every layer has.
        assert (merged.metrics["distance_from_init"][0] == 0).all()
        assert (merged.metrics["distance_from_init"][1:] > 0).all()

    # LeNet runs swept halfway and at the end, every scope; the MLP runs took no sweep.
    runs = tb_layerdyn.read(str(tmp_path))
    scopes = ["model", "layers", "parameters", "robustness"]
    test_images, test_labels = data.glyphs(demo.TEST_IMAGES, seed=1)
    eval_fn = make_eval_fn(
        torch.nn.functional.cross_entropy,
        [(test_images[: interpolation.EVAL_IMAGES], test_labels[: interpolation.EVAL_IMAGES])],
    )
    for run in expected_runs:
        model_name, seed = run.split("-seed")
        spec = train.DEMO_MODELS[model_name]
        sweeps = runs[run].sweeps
        if not spec.sweeps:
            assert sweeps == []
            continue
        assert [(s.step, s.scope) for s in sweeps] == [
            (step, scope) for step in (steps // 2, steps) for scope in scopes
        ]
        by_scope = {s.scope: s for s in sweeps if s.step == steps}
        assert list(by_scope["layers"].curves) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
        assert len(by_scope["parameters"].curves) == 5 * interpolation.PARAMS_PER_LAYER
        # Alpha 0 is the initial model, rebuilt here from the run's seed; alpha 1 the end model.
        torch.manual_seed(int(seed))
        initial = spec.factory().eval()
        model_curve = by_scope["model"].curves["model"]
        alphas = by_scope["model"].alphas
        for metric, value in eval_fn(initial).items():
            assert model_curve[metric][alphas == 0][0] == pytest.approx(value, rel=1e-5)
        end = by_scope["robustness"].end_metrics
        for metric in end:
            assert model_curve[metric][alphas == 1][0] == pytest.approx(end[metric], rel=1e-5)
