"""Pictures on the torch side: layouts, the pixel cap, pooling, the probe's hooks and the tracker.

Layouts are checked against ``picture_helpers.reference_picture``, a cell-by-cell loop; what the
tracker writes is read back from the event files and compared with the tensors it drew.
"""

import math
import os
import tempfile

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from tensorboard.backend.event_processing import event_file_loader
from torch.utils.tensorboard import SummaryWriter

from picture_helpers import LeNet, assert_close_to_levels, picture_events, reference_picture
from layerdyn_helpers import Zoo, train_step, zoo_batch
from tb_layerdyn import LayerDynamics, log_layer_dynamics
from tb_layerdyn.format import colormaps
from tb_layerdyn.format import pictures as payload
from tb_layerdyn.tracking import picture_layouts, probe
from tb_layerdyn.tracking import pictures as capture


class Jitter(nn.Module):
    """Draws random numbers in every forward, eval mode or not."""

    def forward(self, x):
        return x + 1e-3 * torch.randn_like(x)


class Noisy(nn.Module):
    """Dropout and batch norm: a probe pass in train mode would draw random numbers and move the
    running statistics. With ``jitter``, even an eval-mode pass draws."""

    def __init__(self, jitter=False):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.jitter = Jitter() if jitter else nn.Identity()
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(self.jitter(self.drop(F.relu(self.bn(self.conv(x))))).flatten(1))


# ----------------------------------------------------------------------------- layouts


def test_lenet_layers_are_described_as_drawn():
    assert picture_layouts.weight_plan("fc1.weight", (120, 400)).description == (
        "fc1.weight (120, 400): 120×400 matrix, 4×4 blocks, max-|w| pooled to 30×100"
    )
    conv = picture_layouts.weight_plan("conv2.weight", (16, 6, 5, 5))
    assert conv.description == "conv2.weight (16, 6, 5, 5): 16×6 grid of 5×5 kernels"
    assert (conv.picture_shape, conv.pooled_tile, conv.cells, conv.reduced) == ((80, 30), (5, 5), 96, False)
    acts = picture_layouts.activation_plan("conv1 output", (6, 28, 28))
    assert acts.description == (
        "conv1 output (6, 28, 28): 6 channel maps of 28×28 in a 2×3 grid, 2×2 blocks, max-|a| pooled to 14×14"
    )
    assert (acts.pooled_grid, acts.pooled_tile, acts.cells) == ((2, 3), (14, 14), 6)
    assert picture_layouts.weight_plan("fc.bias", (84,)).description == "fc.bias (84,): row of 84"
    wide = picture_layouts.weight_plan("conv.weight", (512, 512, 3, 3))
    assert "25×25 channel blocks, max-|w| pooled to 21×21" in wide.description
    assert wide.pooled_tile == (3, 3)  # whole kernels are kept


@pytest.mark.parametrize("shape", [(), (7,), (5000,), (3, 4), (120, 400), (4097, 1), (84, 120),
                                   (16, 6, 5, 5), (512, 512, 3, 3), (2, 3, 100, 100), (8, 4, 9),
                                   (300, 300, 3, 3, 3)])
def test_weight_pictures_respect_the_cap_with_the_least_pooling(shape):
    plan = picture_layouts.weight_plan("w", shape)
    height, width = plan.picture_shape
    assert height * width <= picture_layouts.PIXEL_CAP
    if plan.grid_block > 1:  # one block smaller would not have fitted
        k = plan.grid_block - 1
        tiles = math.ceil(plan.grid[0] / k) * math.ceil(plan.grid[1] / k)
        assert tiles * plan.pooled_tile[0] * plan.pooled_tile[1] > picture_layouts.PIXEL_CAP
    if max(plan.tile_block) > 1 and plan.grid == (1, 1):
        s = max(plan.tile_block) - 1
        assert math.ceil(plan.tile[0] / min(s, plan.tile[0])) * math.ceil(plan.tile[1] / s) > picture_layouts.PIXEL_CAP
    if math.prod(shape or (1,)) <= picture_layouts.PIXEL_CAP:
        assert not plan.reduced and plan.picture_shape[0] * plan.picture_shape[1] == math.prod(shape or (1,))


@pytest.mark.parametrize("shape", [(6, 28, 28), (64, 56, 56), (5000, 1, 1), (3, 2, 4, 5), (10, 768), (120,)])
def test_activation_pictures_respect_the_cap(shape):
    plan = picture_layouts.activation_plan("a", shape)
    assert plan.picture_shape[0] * plan.picture_shape[1] <= picture_layouts.PIXEL_CAP
    if len(shape) >= 3:
        rows, columns = plan.pooled_grid
        assert rows * columns >= plan.cells > (rows - 1) * columns
        assert plan.cells == math.ceil(shape[0] / plan.channel_group)


# ----------------------------------------------------------------------------- pooling


@pytest.mark.parametrize("shape", [(6, 1, 5, 5), (16, 6, 5, 5), (70, 70, 3, 3), (2, 3, 100, 100), (120, 400),
                                   (84, 120), (10, 84), (5000,), (129, 33), (8, 4, 9)])
def test_weight_mosaic_matches_the_reference(shape):
    tensor = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
    plan = picture_layouts.weight_plan("w", shape)
    (got,) = capture.mosaic([tensor], plan)
    assert tuple(got.shape) == plan.picture_shape
    np.testing.assert_array_equal(got.numpy(), reference_picture(tensor.numpy(), plan))


@pytest.mark.parametrize("shape", [(6, 28, 28), (16, 10, 10), (5000, 1, 1), (7, 3, 9, 9), (10, 768), (120,)])
def test_activation_mosaic_matches_the_reference(shape):
    tensor = torch.randn(shape, generator=torch.Generator().manual_seed(len(shape)))
    plan = picture_layouts.activation_plan("a", shape)
    (got,) = capture.mosaic([tensor], plan)
    np.testing.assert_array_equal(got.numpy(), reference_picture(tensor.numpy(), plan))


def test_conv_kernels_sit_in_their_tiles():
    weight = torch.arange(4 * 3 * 2 * 5, dtype=torch.float32).reshape(4, 3, 2, 5)
    (got,) = capture.mosaic([weight], picture_layouts.weight_plan("w", weight.shape))
    for o in range(4):
        for i in range(3):
            np.testing.assert_array_equal(got[o * 2:(o + 1) * 2, i * 5:(i + 1) * 5].numpy(), weight[o, i].numpy())


def test_pooling_keeps_the_strongest_element_with_its_sign_and_any_nan():
    matrix = torch.zeros(128, 128)
    matrix[0, 0], matrix[1, 1] = 2.0, -3.0  # one 2x2 block: -3 wins
    matrix[2, 2] = float("nan")
    matrix[4, 4], matrix[5, 5] = -1.5, 1.5  # a tie of magnitudes: the positive one
    matrix[6, 7], matrix[7, 6] = -0.5, -0.25  # a block of negative values and zeros
    plan = picture_layouts.weight_plan("w", matrix.shape)
    assert plan.tile_block == (2, 2)
    (got,) = capture.mosaic([matrix], plan)
    assert got[0, 0] == -3.0 and math.isnan(got[1, 1]) and got[5, 5] == 0.0
    assert got[2, 2] == 1.5 and got[3, 3] == -0.5
    odd = torch.zeros(129, 33)  # partial blocks at the right and bottom edges
    odd[128, 32], odd[127, 31] = -2.0, 1.0
    (got,) = capture.mosaic([odd], picture_layouts.weight_plan("w", odd.shape))
    assert got[-1, -1] == -2.0 and got[-2, -2] == 1.0


def test_travel_keeps_the_weight_that_travelled_furthest():
    generator = torch.Generator().manual_seed(4)
    weight = torch.randn(120, 400, generator=generator)
    travel = torch.rand(120, 400, generator=generator)
    plan = picture_layouts.weight_plan("w", weight.shape)
    got_travel, got_weight = capture.mosaic([travel, weight], plan)
    np.testing.assert_array_equal(got_travel.numpy(), reference_picture(travel.numpy(), plan))
    np.testing.assert_array_equal(got_weight.numpy(), reference_picture(weight.numpy(), plan, key=travel.numpy()))


# ----------------------------------------------------------------------------- the probe


def hook_counts(model):
    return {name: (len(m._forward_hooks), len(m._forward_pre_hooks)) for name, m in model.named_modules()}


def test_probe_leaves_the_model_the_rng_and_autograd_as_they_were():
    torch.manual_seed(0)
    model = Noisy()
    model.train()
    model.drop.eval()  # a mixed model: each module's own flag comes back
    x = torch.randn(5, 1, 8, 8)
    model(x).sum().backward()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    flags = {name: m.training for name, m in model.named_modules()}
    hooks = hook_counts(model)
    rng = torch.get_rng_state()
    with torch.no_grad():
        out_before = model.eval()(x)
    for name, m in model.named_modules():
        m.training = flags[name]

    captured = probe.capture(model, x, ["conv", "bn", "fc"])

    assert [name for name, _ in captured] == ["conv", "bn", "fc"]
    assert all(not t.requires_grad for _, t in captured)
    assert hook_counts(model) == hooks
    assert {name: m.training for name, m in model.named_modules()} == flags
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # running statistics untouched
    for k, p in model.named_parameters():
        assert torch.equal(p.grad, grads[k])
    # The captured activations are those of an eval-mode pass, first element only.
    with torch.no_grad():
        for m in model.modules():
            m.training = False
        conv = model.conv(x)
        assert torch.equal(captured[0][1], conv[0])
        assert torch.equal(captured[1][1], model.bn(conv)[0])
        out_after = model(x)
        for name, m in model.named_modules():
            m.training = flags[name]
    assert torch.equal(captured[2][1], out_after[0]) and torch.equal(out_before, out_after)


def test_probe_restores_the_random_number_generator():
    model = nn.Sequential(nn.Linear(3, 3), Jitter())
    x = torch.randn(2, 3)
    before = torch.get_rng_state()
    model(x)
    assert not torch.equal(torch.get_rng_state(), before)  # the model does draw
    before = torch.get_rng_state()
    captured = probe.capture(model, x, ["0", "1"])
    assert torch.equal(torch.get_rng_state(), before)
    assert [name for name, _ in captured] == ["0", "1"]


def test_a_failing_probe_says_so_and_leaves_no_hook():
    model = Noisy()
    hooks = hook_counts(model)
    with pytest.raises(ValueError, match="probe: the model's forward raised RuntimeError"):
        probe.capture(model, torch.randn(2, 3, 8, 8), ["conv"])  # three channels for one
    assert hook_counts(model) == hooks and model.training


def train_noisy(images_every, steps=7):
    """Trains a Noisy model with Adam, dropout, batch norm in train mode and random jitter; returns
    the final state, the RNG state, the outputs of every step and the logdir."""
    torch.manual_seed(0)
    model = Noisy(jitter=True)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(1)
    probe_input = torch.randn(2, 1, 8, 8, generator=generator)
    logdir = tempfile.mkdtemp(prefix="pictures_")
    writer = SummaryWriter(logdir)
    options = {} if images_every is None else dict(images_every=images_every, probe=probe_input)
    tracker = LayerDynamics(model, writer, histogram_every=None, **options)
    outputs = []
    for step in range(steps):
        x = torch.randn(6, 1, 8, 8, generator=generator)
        out = model(x)
        outputs.append(out.detach().clone())
        out.square().mean().backward()
        opt.step()
        tracker.log(step)
        opt.zero_grad()
    writer.close()
    return model.state_dict(), torch.get_rng_state(), outputs, logdir


def test_training_is_bit_for_bit_the_same_with_pictures():
    plain_state, plain_rng, plain_out, _ = train_noisy(None)
    state, rng, out, logdir = train_noisy(2)
    assert sorted(picture_events(logdir)) == sorted(payload.PICTURES)  # every kind was drawn
    assert torch.equal(rng, plain_rng)
    for a, b in zip(out, plain_out):
        assert torch.equal(a, b)
    for k, v in plain_state.items():
        assert torch.equal(state[k], v), k


# ----------------------------------------------------------------------------- the tracker


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """LeNet trained 12 steps, pictures every 5 from step 1, with the weights at every step."""
    torch.manual_seed(0)
    model = LeNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(16, 1, 32, 32, generator=generator)
    y = torch.randint(0, 10, (16,), generator=generator)
    logdir = tmp_path_factory.mktemp("lenet")
    writer = SummaryWriter(str(logdir))
    hooks = hook_counts(model)
    tracker = LayerDynamics(model, writer, histogram_every=None, images_every=5, probe=x[:3],
                            probe_layers=["conv1", "fc2"])
    weights, grads, activations = {}, {}, {}
    for step in range(1, 13):
        F.cross_entropy(model(x), y).backward()
        opt.step()
        tracker.log(step)
        weights[step] = {n: p.detach().clone() for n, p in model.named_parameters()}
        grads[step] = {n: p.grad.clone() for n, p in model.named_parameters()}
        with torch.no_grad():
            conv1 = model.conv1(x[:1])
            conv2 = model.conv2(F.max_pool2d(F.relu(conv1), 2))
            fc2 = model.fc2(F.relu(model.fc1(F.max_pool2d(F.relu(conv2), 2).flatten(1))))
        activations[step] = {"conv1": conv1[0], "fc2": fc2[0]}
        opt.zero_grad()
    assert hook_counts(model) == hooks
    writer.close()
    return picture_events(str(logdir)), weights, grads, activations


def test_pictures_at_the_first_call_then_every_multiple(lenet_run):
    events = lenet_run[0]
    for kind in ("weights", "gradients", "travel", "activations"):
        assert [step for step, _, _ in events[kind]] == [1, 5, 10], kind
    assert [step for step, _, _ in events["updates"]] == [5, 10]  # nothing to compare at the first


def test_a_call_writes_every_kind_in_one_event(tmp_path):
    # One record per call: one checksum pass and one file append in TensorBoard's writer.
    model = LeNet()
    x = torch.randn(4, 1, 32, 32)
    writer = SummaryWriter(str(tmp_path))
    tracker = LayerDynamics(model, writer, histogram_every=None, images_every=2, probe=x[:1])
    for step in range(3):
        model(x).sum().backward()
        tracker.log(step)
        model.zero_grad()
    writer.close()
    (name,) = [n for n in os.listdir(tmp_path) if "tfevents" in n]
    found = []
    for event in event_file_loader.EventFileLoader(str(tmp_path / name)).Load():
        kinds = [v.tag.split("/")[2] for v in event.summary.value if v.tag.startswith(payload.TAG_PREFIX)]
        if kinds:
            found.append((event.step, kinds))
    assert found == [(0, ["weights", "gradients", "travel", "activations"]),
                     (2, ["weights", "gradients", "updates", "travel", "activations"])]


def test_weights_and_gradients_are_the_tensors_at_their_step(lenet_run):
    events, weights, grads, _ = lenet_run
    for kind, source in (("weights", weights), ("gradients", grads)):
        for step, parsed, pictures in events[kind]:
            assert parsed.layers == ("conv1", "conv2", "fc1", "fc2", "fc3")
            for index, (layer, picture) in enumerate(zip(parsed.layers, pictures)):
                tensor = source[step][f"{layer}.weight"]
                plan = picture_layouts.weight_plan(f"{layer}.weight", tensor.shape)
                assert parsed.shapes[index] == plan.picture_shape
                pooled = "|g|" if kind == "gradients" else "|w|"
                assert parsed.descriptions[index] == plan.description.replace("|w|", pooled)
                assert_close_to_levels(picture.planes[0], reference_picture(tensor.numpy(), plan))


def test_updates_are_the_change_since_the_previous_picture(lenet_run):
    events, weights, _, _ = lenet_run
    previous = {5: 1, 10: 5}
    for step, parsed, pictures in events["updates"]:
        for layer, picture in zip(parsed.layers, pictures):
            name = f"{layer}.weight"
            change = weights[step][name] - weights[previous[step]][name]
            plan = picture_layouts.weight_plan(name, change.shape)
            assert_close_to_levels(picture.planes[0], reference_picture(change.numpy(), plan))
            # Not the last step's change alone: five steps of momentum SGD are far larger.
            last = weights[step][name] - weights[step - 1][name]
            assert np.abs(change.numpy()).max() > 2 * np.abs(last.numpy()).max()


def test_travel_is_the_distance_from_the_first_weights(lenet_run):
    events, weights, _, _ = lenet_run
    for step, parsed, pictures in events["travel"]:
        assert parsed.planes == ("travel", "weight")
        for layer, picture in zip(parsed.layers, pictures):
            name = f"{layer}.weight"
            travel = (weights[step][name] - weights[1][name]).abs()
            plan = picture_layouts.weight_plan(name, travel.shape)
            assert_close_to_levels(picture.planes[0], reference_picture(travel.numpy(), plan))
            reference = reference_picture(weights[step][name].numpy(), plan, key=travel.numpy())
            assert_close_to_levels(picture.planes[1], reference)
            if step == 1:
                assert (picture.planes[0].values() == 0).all()
                drawn = payload.picture_rgb(parsed, parsed.layers.index(layer), picture)
                grid = drawn[(drawn != colormaps.BACKGROUND_RGB).any(axis=-1)]
                assert (grid == 255).all()  # nothing travelled yet: white


def test_activations_of_the_chosen_layers(lenet_run):
    events, _, _, activations = lenet_run
    for step, parsed, pictures in events["activations"]:
        assert parsed.layers == ("conv1", "fc2") and parsed.maps == ("gray",)
        for layer, picture in zip(parsed.layers, pictures):
            tensor = activations[step][layer]
            plan = picture_layouts.activation_plan(f"{layer} output", tensor.shape)
            assert_close_to_levels(picture.planes[0], reference_picture(tensor.numpy(), plan))
        index = parsed.layers.index("conv1")
        assert parsed.shapes[index] == (28, 42) and parsed.cells[index] == 6


def test_every_picture_draws_at_its_documented_size(lenet_run):
    for frames in lenet_run[0].values():
        for _, parsed, pictures in frames:
            for index, picture in enumerate(pictures):
                drawn = payload.picture_rgb(parsed, index, picture)
                assert drawn.shape == parsed.drawn_shape(index) + (3,) and drawn.dtype == np.uint8


def test_layers_without_a_gradient_have_no_picture(tmp_path):
    torch.manual_seed(0)
    model = Zoo()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path))
    tracker = LayerDynamics(model, writer, histogram_every=None, images_every=1, images=["gradients", "weights"])
    train_step(model, opt, zoo_batch(torch.Generator().manual_seed(0)))
    tracker.log(0)
    writer.close()
    events = picture_events(str(tmp_path))
    (_, parsed, pictures), = events["gradients"]
    missing = [layer for layer, picture in zip(parsed.layers, pictures) if picture is None]
    assert missing == ["frozen"]
    (_, parsed, pictures), = events["weights"]
    assert all(picture is not None for picture in pictures)
    # The tied head keeps only its bias, drawn as a row.
    assert parsed.descriptions[parsed.layers.index("head")] == "head.bias (10,): row of 10"


def test_nan_weights_are_drawn_and_do_not_stop_training(tmp_path):
    torch.manual_seed(0)
    model = LeNet()
    writer = SummaryWriter(str(tmp_path))
    tracker = LayerDynamics(model, writer, histogram_every=None, images_every=1, images=["weights"])
    with torch.no_grad():
        model.fc3.weight[2, 3] = float("nan")
    with pytest.warns(UserWarning, match="NaN"):
        tracker.log(0)
    writer.close()
    (_, parsed, pictures), = picture_events(str(tmp_path))["weights"]
    index = parsed.layers.index("fc3")
    assert math.isnan(pictures[index].planes[0].values()[2, 3])
    drawn = payload.picture_rgb(parsed, index, pictures[index])
    assert tuple(drawn[2, 3]) == colormaps.NAN_RGB


@pytest.mark.parametrize("options, message", [
    (dict(images_every=0), "images_every must be a positive int"),
    (dict(images_every=True), "images_every must be a positive int"),
    (dict(images_every=5, images=["histograms"]), "images must name some of"),
    (dict(images_every=5, images=["activations"]), "no probe was given"),
    (dict(images_every=5, probe=torch.zeros(1, 1, 32, 32), probe_layers=["conv9"]), "probe_layers names \\['conv9'\\]"),
    (dict(images=["weights"]), "need images_every"),
    (dict(probe=torch.zeros(1)), "need images_every"),
])
def test_bad_picture_options_name_the_argument(options, message):
    with pytest.raises(ValueError, match=message):
        LayerDynamics(LeNet(), None, **options)


def test_a_probe_that_is_not_a_tensor_is_refused():
    with pytest.raises(TypeError, match="probe must be a tensor"):
        LayerDynamics(LeNet(), None, images_every=1, probe=[[0.0]])


def test_log_layer_dynamics_takes_a_probe_on_every_call(tmp_path):
    torch.manual_seed(0)
    model = LeNet()
    x = torch.randn(2, 1, 32, 32)
    for step in range(3):
        log_layer_dynamics(str(tmp_path), model, step, images_every=2, probe=x, histogram_every=None)
    with pytest.raises(ValueError, match="differ from the first call"):
        log_layer_dynamics(str(tmp_path), model, 3, images_every=2, probe=x.clone(), histogram_every=None)


class Mixed(nn.Module):
    """A bf16 layer beside an fp32 one, and a layer whose weight is empty (0 inputs)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.low = nn.Linear(3, 2).to(torch.bfloat16)
        self.empty = nn.Linear(0, 2)

    def forward(self, x):
        return self.low(self.fc(x).to(torch.bfloat16)).float()


def test_bf16_and_empty_layers(tmp_path):
    torch.manual_seed(0)
    model = Mixed()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    writer = SummaryWriter(str(tmp_path))
    tracker = LayerDynamics(model, writer, histogram_every=None, images_every=1)
    x = torch.randn(5, 4)
    weights = []
    for step in range(2):
        model(x).square().sum().backward()
        opt.step()
        tracker.log(step)
        weights.append(model.low.weight.detach().float().clone())
        opt.zero_grad()
    writer.close()
    events = picture_events(str(tmp_path))
    (_, parsed, pictures), = events["updates"]
    assert parsed.layers == ("fc", "low", "empty")
    assert parsed.descriptions[2] == "empty.bias (2,): row of 2"  # its weight is empty
    assert_close_to_levels(pictures[1].planes[0], (weights[1] - weights[0]).numpy())
