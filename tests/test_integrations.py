"""The callbacks against the real frameworks: a Hugging Face Trainer on a tiny GPT-2 built from a
config (nothing downloaded) and a Lightning Trainer, both with gradient accumulation. At every
logged step the values equal a float64 reference computed from the weights and gradients each
update used, recorded through the frameworks' own hooks."""

import os

import pytest
import torch
from torch import nn

from layerdyn_helpers import metric_events

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def layer_params(model, layers):
    """Each layer's parameters, written out plainly: a module's own ones, a tied one counted once."""
    modules = dict(model.named_modules())
    seen, out = set(), {}
    for name in layers:
        module = modules[name if name != "(root)" else ""]
        params = []
        for key, p in module.named_parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                params.append(f"{name}.{key}" if name != "(root)" else key)
        out[name] = params
    return out


def reference(records, members):
    """``{step: {(metric, layer): value}}`` in float64 from ``(step, before, after, grads)``."""
    initial = records[0][1]
    table = {}
    for step, before, after, grads in records:
        row = table.setdefault(step, {})
        for layer, names in members.items():
            def cat(d, names=names):
                return torch.cat([d[n].double().flatten() for n in names])

            w, prev, w0 = cat(after), cat(before), cat(initial)
            row[("weight_norm", layer)] = float(w.norm())
            row[("update_size", layer)] = float((w - prev).norm())
            row[("distance_from_init", layer)] = float((w - w0).norm())
            row[("rwc", layer)] = float((w - prev).abs().sum() / prev.abs().sum())
            row[("grad_norm", layer)] = float(cat(grads).norm())
    return table


def logged_values(logdir):
    (tag, content, steps, values) = [e for e in metric_events(logdir) if e[1]["order"] == "forward"][0]
    table = {}
    for step, array in zip(steps, values):
        table[step] = {
            (metric, layer): float(array[m, c])
            for m, metric in enumerate(content["metrics"])
            for c, layer in enumerate(content["layers"])
        }
    return content, table


def assert_matches(logged, expected):
    assert sorted(logged) == sorted(expected)
    for step, row in expected.items():
        for key, value in row.items():
            assert logged[step][key] == pytest.approx(value, rel=2e-4, abs=1e-7), (step, key)
        assert all(logged[step][("grad_norm", layer)] > 0 for _, layer in row if _ == "grad_norm")


def snapshot(model, grads=False):
    return {
        n: (p.grad if grads else p).detach().clone()
        for n, p in model.named_parameters()
        if not grads or p.grad is not None
    }


def test_transformers_trainer_callback(tmp_path, one_thread):
    transformers = pytest.importorskip("transformers")
    from tb_layerdyn.integrations.transformers import LayerDynamicsCallback

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_embd=16, n_head=2, n_positions=16, vocab_size=32,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    model = transformers.GPT2LMHeadModel(config)
    gen = torch.Generator().manual_seed(0)
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 32, (32, 8), generator=gen)]

    records = []

    class Recorder(transformers.TrainerCallback):
        """The weights and gradients each update used, at the Trainer's own hooks around it."""

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            self.pending = (state.global_step + 1, snapshot(model), snapshot(model, grads=True))

        def on_optimizer_step(self, args, state, control, model=None, **kwargs):
            step, before, grads = self.pending
            records.append((step, before, snapshot(model), grads))

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=2,
        max_steps=4, learning_rate=5e-3, logging_steps=1, save_strategy="no", report_to=["tensorboard"],
        use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, seed=0,
    )
    callback = LayerDynamicsCallback(every=1)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback, Recorder()])
    trainer.train()

    (run,) = os.listdir(tmp_path / "runs")
    logdir = str(tmp_path / "runs" / run)  # the Trainer's own TensorBoard run: ours is beside it
    content, logged = logged_values(logdir)
    members = layer_params(model, content["layers"])
    assert "lm_head" not in members and "transformer.wte" in members  # tied: counted once
    assert [s for s, *_ in records] == [1, 2, 3, 4]
    assert_matches(logged, reference(records, members))
    groups = [g["name"] for g in content["groups"]]
    assert groups[:3] == ["transformer", "transformer.h.0", "transformer.h.1"]
    # The Trainer's own scalars are in the same run directory.
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(logdir)
    acc.Reload()
    assert "train/loss" in acc.Tags()["scalars"]


def test_lightning_trainer_callback(tmp_path, one_thread):
    try:
        import lightning.pytorch as pl
    except ImportError:
        pl = pytest.importorskip("pytorch_lightning")
    from tb_layerdyn.integrations.lightning import LayerDynamicsCallback

    class Regression(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    records = []

    class Recorder(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if records and records[-1][2] is None:
                records[-1][2] = snapshot(pl_module)
            records.append([trainer.global_step, snapshot(pl_module), None, snapshot(pl_module, grads=True)])

        def on_train_end(self, trainer, pl_module):
            records[-1][2] = snapshot(pl_module)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=gen)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)
    logger = pl.loggers.TensorBoardLogger(str(tmp_path), name="lit")
    trainer = pl.Trainer(
        max_steps=4, accumulate_grad_batches=2, logger=logger, accelerator="cpu", devices=1,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        log_every_n_steps=1, callbacks=[LayerDynamicsCallback(), Recorder()],
    )
    module = Regression()
    trainer.fit(module, data)

    content, logged = logged_values(logger.log_dir)  # the logger's own run directory
    members = {
        name: [f"net.{name.split('.')[-1]}.weight", f"net.{name.split('.')[-1]}.bias"]
        for name in content["layers"]
    }
    assert content["layers"] == ["net.0", "net.2"]
    expected = reference([(s, before, after, grads) for s, before, after, grads in records], members)
    assert [r[0] for r in records] == [0, 1, 2, 3]
    assert_matches(logged, expected)
