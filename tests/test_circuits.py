"""Attribution graphs: the replacement model is exact, each edge is a linearised ablation, pruning and scores."""

import pytest
import torch

from sae.autoencoder import SAEConfig, SparseAutoencoder
from sae.circuits import Replacement, attribute, influence, prune
from sae.gpt import GPT, GPTConfig

T = 7


@pytest.fixture(scope="module")
def setup():
    """A two-layer model (the graph code must not assume one) with a random skip transcoder per MLP."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, d_model=16, n_head=2, d_mlp=32, n_ctx=16, vocab_size=40)).eval()
    for p in model.parameters():  # larger than the init, so that LayerNorm and attention are far from linear
        p.data.normal_(0, 0.3)
    tcs = {}
    for layer in range(2):
        cfg = SAEConfig(d_in=16, d_sae=24, d_out=16, arch="topk", k=3, site=f"blocks.{layer}.mlp.hook_in",
                        target_site=f"blocks.{layer}.mlp.hook_out")
        tc = SparseAutoencoder(cfg, generator=torch.Generator().manual_seed(layer))
        with torch.no_grad():
            tc.W_skip.normal_(0, 0.1, generator=torch.Generator().manual_seed(10 + layer))
            tc.b_dec.normal_(0, 0.1, generator=torch.Generator().manual_seed(20 + layer))
        tc.set_input_scale_(1.3, 0.7)
        tcs[layer] = tc.eval()
    tokens = torch.randint(0, 40, (T,), generator=torch.Generator().manual_seed(1))
    return model, tcs, tokens


def test_the_replacement_computes_the_models_logits_exactly(setup):
    model, tcs, tokens = setup
    rep = Replacement(model, tcs, tokens)
    with torch.no_grad():
        _, logits = rep.run(rep.emb, rep.feats, rep.errs)
        torch.testing.assert_close(logits, model(tokens[None])[0], rtol=1e-5, atol=1e-5)
        assert any(e.abs().max() > 0.1 for e in rep.errs), "random transcoders miss a lot: the errors carry it"
        _, without = rep.run(rep.emb, rep.feats, [torch.zeros_like(e) for e in rep.errs])
        assert not torch.allclose(without, logits, atol=1e-3), "the error nodes must matter"
    g = attribute(model, tcs, tokens, target=5)
    assert g.logit == pytest.approx(float(model(tokens[None])[0, -1, 5].detach()), abs=1e-5)


def test_every_edge_is_the_change_of_its_target_when_its_source_is_zeroed(setup):
    """In the replacement (affine in its inputs) zeroing one source changes a target by exactly
    minus the edge: checked for sources of every kind, into features of layer 1 and the logit."""
    model, tcs, tokens = setup
    g = attribute(model, tcs, tokens, target=5)
    rep = Replacement(model, tcs, tokens)
    n_f = len(g.features)

    def target_value(emb, feats, errs, row):
        inputs, logits = rep.run(emb, feats, errs)
        if row == len(g.adjacency) - 1:
            return float(logits[-1, g.target])
        layer, p, i = g.features[row]
        return float(rep.pre_acts(layer, inputs[layer][p:p + 1])[0, i])

    rows = [r for r, (layer, _, _) in enumerate(g.features) if layer == 1][:3] + [len(g.adjacency) - 1]
    checked = 0
    with torch.no_grad():
        for row in rows:
            base = target_value(rep.emb, rep.feats, rep.errs, row)
            sources = g.adjacency[row].nonzero().flatten().tolist()
            assert any(g.kind(s) == "feature" for s in sources) and any(g.kind(s) == "token" for s in sources)
            for s in sources[:: max(1, len(sources) // 8)]:
                emb, feats, errs = rep.emb.clone(), [f.clone() for f in rep.feats], [e.clone() for e in rep.errs]
                kind, layer, p, i = g.describe(s)
                if kind == "feature":
                    feats[layer][p, i] = 0
                elif kind == "error":
                    errs[layer][p] = 0
                else:
                    emb[p] = 0
                change = target_value(emb, feats, errs, row) - base
                assert change == pytest.approx(-float(g.adjacency[row, s]), rel=1e-3, abs=1e-4), (kind, row, s)
                checked += 1
    assert checked >= 12
    later = [s for s in range(n_f) if g.features[s][0] == 1]
    assert not g.adjacency[:n_f][:, later][[r for r in range(n_f) if g.features[r][0] == 0]].any(), \
        "a layer-0 feature cannot be fed by a layer-1 feature"


def test_influence_is_the_normalised_path_sum():
    A = torch.tensor([[0., 0, 0, 0], [2, 0, 0, 0], [1, -3, 0, 0], [0, 1, 1, 0]])  # node 3 is the logit
    a = A.abs() / A.abs().sum(1, keepdim=True).clamp_min(1e-10)
    closed = (torch.linalg.inv(torch.eye(4) - a) - torch.eye(4))[-1]
    torch.testing.assert_close(influence(A), closed)


def test_pruning_keeps_the_influential_nodes_and_scores_are_shares(setup):
    model, tcs, tokens = setup
    g = prune(attribute(model, tcs, tokens, target=5))
    n_f = len(g.features)
    kept_tokens_and_logit = g.node_mask[n_f + g.n_layers * g.n_pos:]
    assert kept_tokens_and_logit.all() and 0 < int(g.node_mask[:n_f].sum()) < n_f
    assert not (g.edge_mask & ~(g.node_mask[:, None] & g.node_mask[None, :])).any()
    assert 0 <= g.scores["replacement"] <= 1 and 0 <= g.scores["completeness"] <= 1
    everything = prune(attribute(model, tcs, tokens, target=5), node_threshold=1.0, edge_threshold=1.0)
    assert int(everything.node_mask.sum()) >= int(g.node_mask.sum())
    with pytest.raises(ValueError, match="share of the influence"):
        prune(g, node_threshold=80)


def test_a_transcoder_that_misses_nothing_scores_one(setup, monkeypatch):
    model, tcs, tokens = setup
    rep = Replacement(model, tcs, tokens)
    monkeypatch.setattr(Replacement, "__init__", lambda self, *a: self.__dict__.update(
        {**rep.__dict__, "errs": [torch.zeros_like(e) for e in rep.errs]}))
    g = prune(attribute(model, tcs, tokens, target=5))
    assert g.scores["replacement"] == pytest.approx(1.0) and g.scores["completeness"] == pytest.approx(1.0)


def test_a_model_without_a_transcoder_per_mlp_is_a_clear_error(setup):
    model, tcs, tokens = setup
    with pytest.raises(ValueError, match="layer 1 needs a transcoder"):
        attribute(model, {0: tcs[0]}, tokens, target=5)
    with pytest.raises(ValueError, match="one prompt"):
        attribute(model, tcs, tokens[None], target=5)
    with pytest.raises(ValueError, match="not a token id"):
        attribute(model, tcs, tokens, target=40)
    with pytest.raises(ValueError, match="keep its last 16"):
        attribute(model, tcs, torch.zeros(17, dtype=torch.long), target=5)


def test_the_graph_predicts_what_ablating_a_feature_does_to_the_model(setup):
    """Each top feature's predicted logit change against the real model's (its own MLPs and
    LayerNorms): close, though not equal, since the model is not the linearised replacement."""
    from sae.circuits import ablation_check

    model, tcs, tokens = setup
    g = prune(attribute(model, tcs, tokens, target=5))
    check = ablation_check(model, tcs, g, top=10)
    assert len(check["predicted"]) == 10 and check["correlation"] > 0.5, check
    assert any(abs(m) > 1e-3 for m in check["measured"])
