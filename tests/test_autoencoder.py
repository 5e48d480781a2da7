"""The sparse autoencoder (sae/autoencoder.py): each test checks an invariant or a hand computation."""

from dataclasses import asdict

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sae.autoencoder import SAEConfig, SparseAutoencoder, geometric_median, input_scale_for

ARCHS = ("relu", "relu_april", "topk")


def make_sae(arch="relu", d_in=16, d_sae=64, seed=0, **kw):
    kw.setdefault("site", "blocks.0.mlp.hook_post")
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, d_sae=d_sae, arch=arch, k=kw.pop("k", 4), **kw),
                            generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # make the biases non-trivial so that sign mistakes show
        sae.b_dec.normal_(0, 0.3, generator=torch.Generator().manual_seed(seed + 1))
        sae.b_enc.normal_(0, 0.1, generator=torch.Generator().manual_seed(seed + 2))
    return sae


def data(n=32, d=16, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * 2.0 + 0.5


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_equals_decode_of_encode(arch):
    sae = make_sae(arch)
    sae.set_input_scale_(0.7)
    x = data()
    out = sae(x)
    f = sae.encode(x)
    assert torch.allclose(out.f, f, atol=1e-5), "forward's f must equal encode(x)"
    assert torch.allclose(out.x_hat, sae.decode(f), atol=1e-5), "forward's x_hat must equal decode(encode(x))"
    # against a naive reference written straight from the formula
    s = 0.7
    pre = ((x * s - sae.b_dec) if arch != "relu_april" else x * s) @ sae.W_enc + sae.b_enc
    ref = torch.relu(pre)
    if arch == "topk":
        keep = torch.zeros_like(ref).scatter(1, pre.topk(4, dim=1).indices, 1.0)
        ref = ref * keep
    assert torch.allclose(f, ref, atol=1e-5), "f should be ReLU((s·x - b_dec) @ W_enc + b_enc) (no b_dec for relu_april)"
    x_hat_s = ref @ sae.W_dec + sae.b_dec
    assert torch.allclose(out.x_hat, x_hat_s / s, atol=1e-5), "decode must undo the input scale: x̂ = (f @ W_dec + b_dec) / s"
    mse = (x_hat_s - x * s).pow(2).sum(-1).mean()
    assert torch.allclose(out.mse, mse, rtol=1e-5), "mse is mean over the batch of ‖x_s - x̂_s‖² in the scaled space"


def test_leading_dimensions_are_kept():
    sae = make_sae("relu")
    x = torch.randn(2, 3, 16)
    out = sae(x)
    assert out.x_hat.shape == (2, 3, 16) and out.f.shape == (2, 3, 64)
    assert sae.encode(x).shape == (2, 3, 64) and sae.decode(sae.encode(x)).shape == (2, 3, 16)


def test_loss_terms_relu_and_april():
    x = data()
    relu = make_sae("relu")
    out = relu(x, l1_coeff=0.3)
    assert torch.allclose(out.l1, out.f.abs().sum(-1).mean()), "relu's l1 is mean_batch Σ_i |f_i|"
    assert torch.allclose(out.loss, out.mse + 0.3 * out.l1), "loss = mse + λ·l1"
    april = make_sae("relu_april")
    with torch.no_grad():
        april.W_dec.mul_(torch.rand(64, 1, generator=torch.Generator().manual_seed(0)) + 0.1)
    out = april(x, l1_coeff=0.3)
    norms = april.W_dec.norm(dim=1)
    assert torch.allclose(out.l1, (out.f * norms).sum(-1).mean(), rtol=1e-5), (
        "the April penalty weighs each |f_i| by ‖W_dec[i]‖, otherwise shrinking W_dec buys sparsity for free"
    )
    assert torch.allclose(april(x).loss, out.mse), "without λ (the trainer passes it) the loss is the MSE"


def test_topk_keeps_exactly_k_largest():
    sae = make_sae("topk", d_in=32, d_sae=256, k=7)
    x = data(64, 32)
    f = sae.encode(x)
    nnz = (f != 0).sum(-1)
    assert (nnz == 7).all(), f"TopK must keep exactly k=7 latents per token, got counts {nnz.unique().tolist()}"
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    top = pre.topk(7, dim=-1).indices.sort(-1).values
    kept = f.nonzero()[:, 1].reshape(64, 7).sort(-1).values
    assert torch.equal(top, kept), "the kept latents must be the k largest pre-activations"


@pytest.mark.parametrize("with_dead", [False, True])
def test_sparse_topk_matches_dense(with_dead):
    x = data(48, 16)
    dense = make_sae("topk", sparse_topk=False, k=5)
    sparse = make_sae("topk", sparse_topk=True, k=5)
    sparse.load_state_dict(dense.state_dict())
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::3] = True
    outs = []
    for sae in (dense, sparse):
        out = sae(x, dead_mask=dead if with_dead else None)
        out.loss.backward()
        outs.append(out)
    assert torch.allclose(outs[0].x_hat, outs[1].x_hat, atol=1e-5)
    assert torch.allclose(outs[0].f, outs[1].f, atol=1e-6)
    assert torch.allclose(outs[0].loss, outs[1].loss, rtol=1e-5)
    if with_dead:
        assert outs[0].aux > 0, "AuxK should be positive when dead latents exist"
        assert torch.allclose(outs[0].aux, outs[1].aux, rtol=1e-5)
    for name, p in dense.named_parameters():
        q = dict(sparse.named_parameters())[name]
        assert torch.allclose(p.grad, q.grad, atol=1e-5), (
            f"sparse TopK gradient of {name} differs from the dense one: the gather/index_add path "
            "must give the same numbers as multiplying out the mostly-zero matrix"
        )


@pytest.mark.parametrize("k_aux, every_third", [(3, True), (0, True), (5, False)])
def test_auxk_equals_the_formula_on_all_latents(k_aux, every_third):
    """AuxK computes only the dead latents' pre-activations; loss and gradients must equal the
    plain formula: mask every non-dead latent of the full pre-activations to -inf, keep the top
    k_aux, ReLU, decode with all of W_dec, squared error against the detached residual."""
    x = data(40, 16)
    fast = make_sae("topk", k=5, k_aux=k_aux)
    plain = make_sae("topk", k=5, k_aux=k_aux)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::3 if every_third else 20] = True  # 22 dead, or 4 (fewer than k_aux: all of them are used)
    out = fast(x, dead_mask=dead)
    out.aux.backward()

    x_s = x * plain.input_scale
    pre = (x_s - plain.b_dec) @ plain.W_enc + plain.b_enc
    with torch.no_grad():
        f = torch.zeros_like(pre).scatter(-1, pre.topk(5, dim=-1).indices, pre.topk(5, dim=-1).values.relu())
        err = x_s - (f @ plain.W_dec + plain.b_dec)
    n_aux = min(k_aux or 16 // 2, int(dead.sum()))
    masked = pre.masked_fill(~dead, float("-inf"))
    vals, idx = masked.topk(n_aux, dim=-1)
    aux = (torch.zeros_like(pre).scatter(-1, idx, vals.relu()) @ plain.W_dec - err).pow(2).sum(-1).mean()
    aux.backward()
    assert torch.allclose(out.aux, aux, rtol=1e-5)
    for name, p in plain.named_parameters():
        assert torch.allclose(dict(fast.named_parameters())[name].grad, p.grad, atol=1e-5), name


def test_jumprelu_auxk_is_the_formula_without_the_pre_encoder_bias():
    """JumpReLU borrows TopK's AuxK (SynthSAEBench's recipe); it has no pre-encoder bias, so the dead
    latents' pre-activations are x_s @ W_enc + b_enc, and only the dead latents' parameters move."""
    x = data(40, 16)
    sae = make_sae("jumprelu", jump_threshold=0.5)
    with torch.no_grad():
        sae.b_dec.normal_()  # a b_dec the formula must not subtract
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::4] = True
    out = sae(x, dead_mask=dead)
    x_s = x * sae.input_scale
    pre = x_s @ sae.W_enc + sae.b_enc
    with torch.no_grad():
        err = x_s - out.x_hat * sae.input_scale
    vals, idx = pre.masked_fill(~dead, float("-inf")).topk(8, dim=-1)  # k_aux = d_in // 2 = 8 of 16 dead
    aux = (torch.zeros_like(pre).scatter(-1, idx, vals.relu()) @ sae.W_dec - err).pow(2).sum(-1).mean()
    assert out.aux > 0 and torch.allclose(out.aux, aux, rtol=1e-5)
    out.aux.backward()
    assert sae.W_enc.grad[:, ~dead].abs().sum() == 0 and sae.W_enc.grad[:, dead].abs().sum() > 0


def test_encoder_input_gradient_is_not_computed():
    """A dense step costs 10·B·d_in·d_sae FLOPs: 2 for each of 5 matmuls. A 6th (the encoder's input
    gradient) appears if b_dec is subtracted from x with autograd watching (x - b_dec) @ W_enc."""
    B, d_in, d_sae = 128, 32, 256
    sae = make_sae("relu", d_in=d_in, d_sae=d_sae)
    x = data(B, d_in)
    with FlopCounterMode(display=False) as fc:
        sae(x).loss.backward()
    flops = fc.get_total_flops()
    assert flops <= 10 * B * d_in * d_sae * 1.05, (
        f"{flops} FLOPs for a step that needs {10 * B * d_in * d_sae}: the encoder's input gradient is being "
        "computed; fold b_dec into the encoder bias (x @ W_enc - b_dec @ W_enc)"
    )
    topk = make_sae("topk", d_in=d_in, d_sae=d_sae, k=4)
    with FlopCounterMode(display=False) as fc:
        topk(x).loss.backward()
    assert fc.get_total_flops() <= 3 * B * d_in * d_sae, "sparse TopK should only do the encoder's dense matmul"


def test_sparse_decode_with_the_callers_active_entries_equals_the_dense_matmul():
    from sae.evaluation.held_out import Active
    sae = make_sae("topk", d_sae=256, k=4)  # 4 of 256 features: the sparse path
    sae.set_input_scale_(0.7)
    with torch.no_grad():
        f = sae.encode(data())
        dense = (f @ sae.W_dec + sae.b_dec) / 0.7
        assert torch.allclose(sae.decode(f), dense, atol=1e-5)
        assert torch.equal(sae.decode(f, Active.of(f)), sae.decode(f)), \
            "decode given f's non-zero entries must add up the same rows as when it finds them"


def test_decoder_gradient_projection_is_orthogonal_to_rows():
    sae = make_sae("relu")
    sae(data()).loss.backward()
    before = sae.W_dec.grad.clone()
    sae.remove_parallel_decoder_grad_()
    dots = (sae.W_dec.grad * sae.W_dec).sum(1)
    assert dots.abs().max() < 1e-5, "after projection each row's gradient must be orthogonal to the row"
    # what was removed is exactly the parallel part
    removed = before - sae.W_dec.grad
    big = removed.norm(dim=1) > 1e-6
    cos = torch.nn.functional.cosine_similarity(removed[big], sae.W_dec[big], dim=1)
    assert (cos.abs() > 0.999).all(), "only the component along each row may be removed"


def test_decoder_rows_have_unit_norm_after_a_step():
    from sae.train_sae import TrainSAEConfig, train_sae

    sae = make_sae("relu")
    train_sae(sae, iter([data(64, 16, s) for s in range(3)]),
              TrainSAEConfig(n_steps=3, lr=0.05, log_every=0))
    norms = sae.W_dec.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5), (
        "decoder rows not unit norm after the step: did you renormalise after optimizer.step()?"
    )


def test_geometric_median_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    pts = torch.cat([torch.randn(30, 2, generator=g), torch.tensor([[40.0, 40.0], [50.0, -30.0]])]).double()
    gm = geometric_median(pts)

    def cost(y):  # Σ_i ‖x_i - y‖ for a batch of candidate points y (m, 2)
        return (pts[None] - y[:, None]).norm(dim=-1).sum(-1)

    # brute force: a coarse grid, then a fine grid around its best point
    best = torch.zeros(1, 2, dtype=torch.float64)
    for half, n in ((5.0, 201), (0.05, 201), (0.0005, 201)):
        ax = torch.linspace(-half, half, n, dtype=torch.float64)
        grid = torch.cartesian_prod(ax, ax) + best
        best = grid[cost(grid).argmin()][None]
    assert cost(gm[None]).item() <= cost(best).item() + 1e-6, "Weiszfeld should reach the minimum of Σ‖x_i - y‖"
    assert (gm - best[0]).norm() < 1e-3, f"geometric median {gm.tolist()} vs brute force {best[0].tolist()}"
    assert (gm - pts.mean(0)).norm() > 1.0, "two outliers drag the mean but not the geometric median"


def test_init_b_dec_uses_the_scaled_geometric_median():
    sae = make_sae("relu")
    sae.set_input_scale_(2.0)
    x = data(100)
    sae.init_b_dec_(x)
    assert torch.allclose(sae.b_dec, geometric_median((2.0 * x).double()).float(), atol=1e-5), (
        "b_dec lives in the scaled space: its initial value is the geometric median of s·x"
    )


def test_encoder_starts_as_decoder_transpose():
    sae = SparseAutoencoder(SAEConfig(d_in=16, d_sae=64))
    assert torch.equal(sae.W_enc, sae.W_dec.T), "W_enc should be initialised as W_dec.T"
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64)), "relu/topk decoders start with unit rows"


def test_input_scale_makes_losses_scale_free():
    x = data(64)
    s = input_scale_for(x)
    assert abs((s * x).norm(dim=1).mean().item() - 16 ** 0.5) < 1e-4, "E‖s·x‖ must be sqrt(d_in)"
    a, b = make_sae("relu"), make_sae("relu")
    a.set_input_scale_(s)  # a sees raw x, b sees x already scaled
    out_a, out_b = a(x), b(s * x)
    assert torch.allclose(out_a.loss, out_b.loss, rtol=1e-5), "losses are computed in the scaled space"
    assert torch.allclose(out_a.x_hat * s, out_b.x_hat, atol=1e-4), "callers get raw, unscaled reconstructions"


def test_april_folded_save_gives_identical_reconstructions(tmp_path):
    sae = make_sae("relu_april")
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(64, 1, generator=torch.Generator().manual_seed(5)) * 2 + 0.05)
    sae.set_input_scale_(1.3)
    x = data()
    sae.save(tmp_path / "sae.pt")
    loaded = SparseAutoencoder.load(tmp_path / "sae.pt", device="cpu")
    assert torch.allclose(loaded.W_dec.norm(dim=1), torch.ones(64), atol=1e-5), "saved decoder rows should be unit norm"
    out, out2 = sae(x, l1_coeff=0.3), loaded(x, l1_coeff=0.3)
    assert torch.allclose(out.x_hat, out2.x_hat, atol=1e-5), (
        "folding ‖W_dec[i]‖ into encoder column i and b_enc[i] must not change the reconstruction"
    )
    assert torch.allclose(out.loss, out2.loss, rtol=1e-5), "nor the April loss (Σ f_i ‖W_dec[i]‖ is invariant)"
    assert not torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64)), "save must not modify the model being trained"


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip(tmp_path, arch):
    sae = make_sae(arch)
    sae.set_input_scale_(0.25)
    sae.save(tmp_path / "s.pt", preset="tiny")
    ckpt = torch.load(tmp_path / "s.pt", weights_only=True)
    assert set(ckpt) >= {"config", "state_dict"} and ckpt["config"]["arch"] == arch
    loaded = SparseAutoencoder.load(tmp_path / "s.pt", device="cpu")
    assert loaded.cfg == sae.cfg and loaded.meta == {"preset": "tiny"}
    assert loaded.cfg.site == "blocks.0.mlp.hook_post", "the site is part of the saved config"
    assert loaded.input_scale.item() == 0.25, "the input scale must travel with the weights"
    x = data()
    assert torch.allclose(loaded(x).x_hat, sae(x).x_hat, atol=1e-6)
    assert not list(tmp_path.glob(".*tmp")), "the atomic write must not leave temporary files"


def test_a_file_from_another_version_is_a_one_line_error_naming_it(tmp_path):
    """sae 0.1 kept λ in the SAE's config; such a file is refused with the fix, not a TypeError."""
    sae = make_sae("relu")
    torch.save({"config": {**asdict(sae.cfg), "l1_coeff": 3.0}, "state_dict": sae.state_dict()}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"old\.pt was written by another version.*l1_coeff.*train it again"):
        SparseAutoencoder.load(tmp_path / "old.pt", device="cpu")


def test_a_corrupt_file_is_a_one_line_error_naming_it(tmp_path):
    (tmp_path / "sae.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="sae.pt"):
        SparseAutoencoder.load(tmp_path / "sae.pt", device="cpu")


def test_shape_and_config_errors():
    sae = make_sae("relu")
    with pytest.raises(ValueError, match="d_in=16"):
        sae(torch.randn(4, 15))
    with pytest.raises(ValueError, match="d_in=16"):
        sae.encode(torch.randn(4, 32))
    with pytest.raises(ValueError, match="d_sae=64"):
        sae.decode(torch.randn(4, 16))
    with pytest.raises(ValueError, match="arch"):
        SAEConfig(d_in=4, d_sae=8, arch="gated")
    with pytest.raises(ValueError, match="k"):
        SAEConfig(d_in=4, d_sae=8, arch="topk", k=9)
    other = make_sae("relu", d_in=8)
    with pytest.raises(RuntimeError):
        other.load_state_dict(sae.state_dict())


@pytest.mark.parametrize("arch", ["relu", "relu_april", "topk"])
def test_encoding_a_few_features_equals_indexing_the_full_encoding(arch):
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=16, d_sae=64, arch=arch, k=4))
    with torch.no_grad():
        sae.b_enc.fill_(0.1)
    x = torch.randn(3, 5, 16)
    ids = [7, 2, 40]
    assert torch.allclose(sae.encode(x, ids), sae.encode(x)[..., ids], atol=1e-6)
