"""The optimisers of replication.optim: torch's own updates, without torch's compiler stack.

A training job that imports torch._dynamo pays about 1.5 s of start-up for nothing (the suite
never compiles); these tests keep it out, and keep the updates bit for bit torch's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from replication import config, optim

STOCK = {
    "adam": lambda params, train: torch.optim.Adam(
        params, lr=train.lr, weight_decay=train.weight_decay, fused=True
    ),
    "adamax": lambda params, train: torch.optim.Adamax(
        params, lr=train.lr, weight_decay=train.weight_decay
    ),
    "rmsprop": lambda params, train: torch.optim.RMSprop(
        params, lr=train.lr, weight_decay=train.weight_decay, momentum=train.momentum
    ),
}


@pytest.mark.parametrize("name", sorted(STOCK))
def test_each_optimiser_updates_exactly_as_torchs_own(name):
    momentum = 0.5 if name == "rmsprop" else 0.0
    train = config.TrainConfig(optimizer=name, lr=1e-2, weight_decay=1e-4, momentum=momentum)
    start = [torch.randn(5, 3, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    ours = [p.clone().requires_grad_() for p in start]
    theirs = [p.clone().requires_grad_() for p in start]
    optimizer = optim.make_optimizer(ours, train, torch.device("cpu"))
    if name == "rmsprop":  # the ramp's end value, as torch's optimiser was built with
        for group in optimizer.param_groups:
            group["momentum"] = train.momentum
    stock = STOCK[name](theirs, train)
    assert isinstance(optimizer, type(stock))
    for step in range(5):
        for params, opt in ((ours, optimizer), (theirs, stock)):
            opt.zero_grad(set_to_none=True)
            sum(((p - step) ** 2 * (k + 1)).sum() for k, p in enumerate(params)).backward()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert all(not p.grad_fn for p in ours)  # the update ran without recording a graph
    restored = optim.make_optimizer([p.detach().clone() for p in ours], train, torch.device("cpu"))
    restored.load_state_dict(optimizer.state_dict())
    assert restored.state_dict()["state"].keys() == stock.state_dict()["state"].keys()


def test_a_toy_training_job_never_imports_torchs_compiler(tmp_path):
    """The whole toy job, density grid and checks included, in a fresh interpreter."""
    (tmp_path / "tiny.yaml").write_text(
        "model: {method: realnvp, couplings: 2, hidden: [16]}\n"
        "data: {train_size: 500, val_size: 200, test_size: 200}\n"
        "train: {iterations: 4, batch_size: 32, eval_every: 2}\n"
    )
    entropy = [{"name": "toy_entropy/8gaussians", "measured": 2.83, "standard_error": 0.002}]
    (tmp_path / "entropy.json").write_text(json.dumps(entropy))
    run = tmp_path / "run"
    args = ["train", "--config", str(tmp_path / "tiny.yaml"), "--out", str(run), "--density",
            str(run / "density.npz"), "--checks", str(run / "checks.json"), "--entropy",
            str(tmp_path / "entropy.json"), "--grid", "50"]  # fmt: skip
    code = textwrap.dedent(f"""
        import sys
        from replication.__main__ import main
        assert main({args!r}) == 0
        print("dynamo imported:", "torch._dynamo" in sys.modules)
    """)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "dynamo imported: False" in result.stdout
    assert (run / "density.npz").is_file() and (run / "checks.json").is_file()
