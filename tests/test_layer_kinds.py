"""Every parameter kind has a defined outcome, and layers are the ones users think of: blocks at
any depth, parametrized modules as one layer, modules read by their parent in their place, tied
parameters nameable, one regex rule."""

import math
import os
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from layerdyn_helpers import metric_events, values_by_step
from tb_layerdyn import LayerDynamics
from tb_layerdyn.tracking import layers as layers_mod
from tb_layerdyn.tracking.guards import NoGradientWarning

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def quiet_log(tracker, step):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGradientWarning)
        tracker.log(step)


def test_complex_parameters_are_skipped_with_one_warning_naming_them(tmp_path):
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    model.register_parameter("phase", nn.Parameter(torch.ones(2, dtype=torch.complex64)))
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    model(torch.randn(2, 3)).sum().backward()
    with pytest.warns(UserWarning, match=r"complex parameters \['phase'\]"):
        tracker.log(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tracker.log(1)
    tracker.flush()
    (content,) = [c for _, c, _, _ in metric_events(str(tmp_path))]
    assert content["layers"] == ["0", "1"]


def test_meta_and_lazy_parameters_name_the_layer(tmp_path):
    with torch.device("meta"):
        meta = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"\['0', '1'\] have parameters on the meta device"):
        LayerDynamics(meta, str(tmp_path / "meta")).log(0)
    lazy = nn.Sequential(nn.Linear(2, 4), nn.LazyLinear(3))
    tracker = LayerDynamics(lazy, str(tmp_path / "lazy"), histogram_every=None)
    with pytest.raises(ValueError, match=r"\['1'\] have uninitialized \(lazy\) parameters"):
        tracker.log(0)
    lazy(torch.zeros(1, 2))
    quiet_log(tracker, 0)  # after a forward pass it measures as usual


def test_weight_norm_is_one_layer_measured_on_the_weight_it_uses(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    parametrizations.weight_norm(model[0])
    fc = model[0]
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    tracker.attach(opt)
    def snapshot():
        return torch.cat([fc.weight.detach().double().flatten(), fc.bias.detach().double()])

    weights, grads = [snapshot()], []
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 4)).square().mean().backward()
        # The optimizer updates g, v and the bias: those gradients, not the computed weight's.
        grads.append(sum(float(p.grad.double().square().sum()) for p in fc.parameters()))
        opt.step()
        weights.append(snapshot())
    tracker.flush()
    (content,) = [c for _, c, _, _ in metric_events(str(tmp_path))]
    assert content["layers"] == ["0", "2"]
    assert content["param_counts"][0] == 4 * 6 + 6  # the weight it uses, not g (6) and v (24)
    logged = values_by_step(str(tmp_path))
    for k in range(3):
        w, prev = weights[k + 1], weights[k]
        assert logged[k][("weight_norm", "0")] == pytest.approx(float(w.norm()), rel=1e-5)
        assert logged[k][("update_size", "0")] == pytest.approx(float((w - prev).norm()), rel=1e-4)
        assert logged[k][("distance_from_init", "0")] == pytest.approx(float((w - weights[0]).norm()), rel=1e-4)
        assert logged[k][("grad_norm", "0")] == pytest.approx(math.sqrt(grads[k]), rel=1e-5)


def test_spectral_norm_is_measured_without_advancing_its_power_iteration(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5))
    parametrizations.spectral_norm(model[0])
    model(torch.randn(3, 4))
    u = model[0].parametrizations.weight[0]._u.clone()
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    quiet_log(tracker, 0)
    quiet_log(tracker, 1)
    assert torch.equal(model[0].parametrizations.weight[0]._u, u)
    assert model[0].training  # modes restored
    tracker.flush()
    model.eval()
    expected = math.sqrt(float(model[0].weight.double().square().sum() + model[0].bias.double().square().sum()))
    assert values_by_step(str(tmp_path))[1][("weight_norm", "0")] == pytest.approx(expected, rel=1e-5)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        h = self.embed(x)
        return self.head(self.attn(h, h, h)[0])


def test_a_module_read_by_its_parent_is_ordered_where_its_weights_are_read(tmp_path):
    model = Attention()
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    quiet_log(tracker, 0)
    model(torch.randn(2, 4, 3))
    quiet_log(tracker, 1)
    tracker.flush()
    forward = [c for _, c, _, _ in metric_events(str(tmp_path)) if c["order"] == "forward"][0]
    assert forward["layers"] == ["embed", "attn", "attn.out_proj", "head"]


def gpt2():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=3, n_embd=16, n_head=2, n_positions=16, vocab_size=50)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config)


def test_gpt2_and_bert_blocks_at_any_depth_and_the_tied_head():
    model = gpt2()
    found = layers_mod.find_layers(model)
    names = [g["name"] for g in layers_mod.block_groups(model, found)]
    assert names == ["transformer", "transformer.h.0", "transformer.h.1", "transformer.h.2"]
    # lm_head has no weight of its own: it shares transformer.wte's, and naming it finds that.
    tied = layers_mod.aliases(model, found)
    assert tied["lm_head"] == ["transformer.wte"]
    (group,) = layers_mod.user_groups({"head": ["lm_head", "transformer.ln_f"]}, found, tied=tied)
    assert group["members"] == ["transformer.wte", "transformer.ln_f"]
    with pytest.raises(ValueError, match="lm_head lives in transformer.wte"):
        layers_mod.user_groups({"x": ["lm_head.nope"]}, found, tied=tied)
    descriptions = {lay.name: lay.description for lay in found}
    assert descriptions["transformer.wte"] == "Embedding 50×16"
    assert descriptions["transformer.h.0.attn.c_attn"] == "Conv1D 16×48"

    transformers = pytest.importorskip("transformers")
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, vocab_size=40,
        max_position_embeddings=16,
    ))
    found = layers_mod.find_layers(bert)
    names = [g["name"] for g in layers_mod.block_groups(bert, found)]
    assert names == ["bert", "bert.encoder.layer.0", "bert.encoder.layer.1"]


def test_group_regexes_search_anywhere_ignoring_case_as_the_tab_does():
    model = Attention()
    found = layers_mod.find_layers(model)
    (group,) = layers_mod.user_groups({"projections": "PROJ"}, found)
    assert group["members"] == ["attn.out_proj"]
    (anchored,) = layers_mod.user_groups({"first": "^e"}, found)
    assert anchored["members"] == ["embed"]
