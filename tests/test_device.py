"""The device rule: everything fed to a model is made on the model's device.

CPU machines cannot see a violation (every tensor is on the CPU), so `device_check.DeviceCheck`
tracks where each tensor would be on a GPU and fails where CUDA would; the smoke reproduction
runs under it in `test_cli.py`. The CUDA test runs only where a GPU is at hand.
"""

import pytest
import torch

from device_check import DeviceCheck
from sae.gpt import GPT, GPTConfig


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(d_model=16, n_head=2, d_mlp=32, n_ctx=8, vocab_size=32))


def test_a_host_tensor_fed_to_the_model_fails_and_names_where_it_was_made(model):
    with DeviceCheck():
        with pytest.raises(RuntimeError, match=r"GPT called with a tensor made on the host at .*test_device.py"):
            model(torch.tensor([[1, 2, 3]]))
        with pytest.raises(RuntimeError, match="GPT called with a tensor made on the host"):
            model(torch.from_numpy(__import__("numpy").array([[1, 2]])))
        model(torch.tensor([[1, 2, 3]], device=model.wte.weight.device))  # made on the device: fine
        model(torch.tensor([[1, 2, 3]]).to(model.wte.weight.device))  # moved there: fine


def test_mixing_host_and_device_tensors_fails_as_cuda_would(model):
    w = model.lm_head.weight  # (32, 16), a device tensor
    with DeviceCheck():
        model(torch.zeros(1, 2, dtype=torch.long, device=w.device))  # marks the parameters as device
        with pytest.raises(RuntimeError, match="mixes a device tensor with a tensor made on the host"):
            w @ torch.ones(16)
        with pytest.raises(RuntimeError, match="mixes a device tensor"):
            (w.detach() * 2).cpu() + w  # .cpu() brings it back to the host
        w[torch.tensor([0, 1])]  # a device tensor indexed by host indices: CUDA allows it
        kept = w.detach() * 1
        kept.cpu()  # a copy goes to the host; `kept` itself stays on the device
        kept + w
        w.sum() + torch.tensor(1.0)  # 0-dim host tensors are scalars to CUDA
        torch.ones(16, dtype=w.dtype).to(w.device) @ w.T  # moved first: fine


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_smoke_reproduction_on_cuda(tmp_path):
    import json

    from sae.run.pipeline import STAGES, reproduce
    from sae.run.config import get_preset, with_overrides

    summary = reproduce(with_overrides(get_preset("smoke"), ["device=cuda"]), tmp_path / "run", log=lambda *_: None)
    assert set(summary) >= {st.name for st in STAGES}
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 < m["sae"]["fvu"] < 1 and m["sae"]["ce_recovered_zero"] > 0.5
