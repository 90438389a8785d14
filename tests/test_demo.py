"""The demo: its synthetic task is learnable, and a short run logs what TensorBoard will show."""

import numpy as np
import pytest
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.util import tensor_util

from tb_layerdyn import metadata
from tb_layerdyn import table

torch = pytest.importorskip("torch")

from tb_layerdyn.demo import __main__ as demo  # noqa: E402  (needs torch)
from tb_layerdyn.demo import data  # noqa: E402
from tb_layerdyn.demo import train  # noqa: E402


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
    after = train.train_run("lenet5", 0, str(tmp_path / "run"), train_set, test_set, steps=100)
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
        layouts = []
        for tag in tags["tensors"]:
            if tag.startswith(metadata.METRICS_TAG_PREFIX):
                content = metadata.parse_plugin_metadata(
                    multiplexer.SummaryMetadata(run, tag).plugin_data.content
                )
                steps_, values = table.stack_events(
                    (event.step, tensor_util.make_ndarray(event.tensor_proto))
                    for event in multiplexer.Tensors(run, tag)
                )
                layouts.append(table.LayoutEvents(content=content, steps=steps_, values=values))
        merged = table.build_run_table(layouts)
        assert merged.steps.tolist() == list(range(steps + 1))
        model = run.split("-seed")[0]
        user_groups = {g["name"]: g["members"] for g in merged.groups if g["kind"] == "user"}
        assert user_groups == train.DEMO_MODELS[model].groups
        # Step 0 holds the initial weights: nothing has moved yet; afterwards every layer has.
        assert (merged.metrics["distance_from_init"][0] == 0).all()
        assert (merged.metrics["distance_from_init"][1:] > 0).all()
