"""Feature statistics, contexts, logit effects and the dashboard, against brute force."""

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch

from sae.autoencoder import SAEConfig, SparseAutoencoder
from sae.run.dashboard import build_dashboard, format_feature
from sae.gpt import GPT, GPTConfig
from sae.interpret import (FeatureStats, contexts, feature_stats, features_for_concept, features_for_logit_token,
                           features_for_token, logit_effects, logit_weights)

SITE = "blocks.0.mlp.hook_post"


class FakeTokenizer:
    """Token i is the string f"t{i} ", except token 3, which is a script tag."""

    vocab_size = 50
    eot_token = 0

    def token_str(self, i: int) -> str:
        return "<script>alert(1)</script>" if i == 3 else f"t{i} "

    def decode(self, ids) -> str:
        return "".join(self.token_str(i) for i in ids)

    def token_texts(self, ids) -> list[str]:
        return [self.token_str(i) for i in ids]


@pytest.fixture(scope="module")
def small():
    """A random 1-layer GPT, a random SAE on its MLP neurons (biased so most features fire), and
    600 random tokens with random concept labels."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, d_model=32, n_head=2, d_mlp=64, n_ctx=16, vocab_size=50)).eval()
    sae = SparseAutoencoder(SAEConfig(d_in=64, d_sae=48, site=SITE))
    with torch.no_grad():
        sae.b_enc.fill_(0.05)
        sae.input_scale.fill_(3.0)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 50, 600).astype(np.int32)
    labels = rng.integers(-1, 14, 600).astype(np.int8)
    stats = feature_stats(model, sae, tokens, labels, n_tokens=600, top_k=5, n_samples=30,
                          batch_contexts=4, log=False)
    return model, sae, tokens, labels, stats


def brute_force_acts(model, sae, tokens, n_ctx=16, drop_first=1):
    """(n_tokens, d_sae) activations of every token, positions < drop_first set to −inf."""
    n = len(tokens) // n_ctx
    ctx = torch.from_numpy(tokens[: n * n_ctx].astype(np.int64)).view(n, n_ctx)
    with torch.no_grad():
        _, cache = model.run_with_cache(ctx, [SITE])
        f = sae.encode(cache[SITE]).reshape(n * n_ctx, -1)
    f = f.clone()
    f.view(n, n_ctx, -1)[:, :drop_first] = float("-inf")
    return f


def test_top_k_are_the_k_largest_activations(small):
    model, sae, tokens, _, stats = small
    f = brute_force_acts(model, sae, tokens)
    ref_vals, ref_idx = f.topk(5, dim=0)  # (5, d_sae)
    ref_vals = ref_vals.clamp_min(0).T
    assert torch.allclose(stats.top_acts, ref_vals, atol=1e-5), \
        "top_acts are not the k largest activations: is the per-batch top-k merged with the running top-k?"
    # indices may differ only between tied values: check that each index points at its value
    for i in range(sae.cfg.d_sae):
        for v, t in zip(stats.top_acts[i], stats.top_idx[i]):
            if v > 0:
                assert abs(f[t, i] - v) < 1e-5, \
                    "top_idx points at the wrong token: global index = window·n_ctx + position"
    assert stats.n_tokens == (600 // 16) * 15
    assert torch.equal(stats.fire_count, (f > 0).sum(0)), "fire counts differ from brute force"
    assert torch.allclose(stats.max_act, f.max(0).values.clamp_min(0), atol=1e-5)
    assert torch.allclose(stats.act_sum.float(), f.clamp_min(0).sum(0), rtol=1e-4)


def test_top_per_feature_ranks_each_features_entries_ties_in_entry_order():
    from sae.interpret import _top_per_feature
    g = torch.Generator().manual_seed(0)
    cols = torch.randint(0, 7, (400,), generator=g)
    scores = torch.randint(0, 30, (400,), generator=g).float() / 4  # many ties, zeros included
    scores[:3] = torch.tensor([1e-40, 3e38, 0.5])  # a subnormal and a huge value order too
    pick = _top_per_feature(cols, scores, 5, 9)
    for j in range(9):
        mine = [i for i in range(400) if cols[i] == j]
        ref = sorted(mine, key=lambda i: (-scores[i].item(), i))[:5]  # best first, ties by entry
        assert pick[j].tolist() == ref + [-1] * (5 - len(ref)), f"feature {j}"


def test_sample_is_of_firing_tokens_and_concept_mass_adds_up(small):
    model, sae, tokens, labels, stats = small
    f = brute_force_acts(model, sae, tokens)
    for i in range(sae.cfg.d_sae):
        keep = stats.sample_idx[i] >= 0
        assert keep.sum() == min(30, int(stats.fire_count[i])), "the sample should hold min(n_samples, fires) tokens"
        idx = stats.sample_idx[i][keep]
        assert len(set(idx.tolist())) == len(idx), "the sample draws without replacement"
        assert torch.allclose(f[idx, i], stats.sample_acts[i][keep], atol=1e-5)
    assert torch.allclose(stats.concept_mass.sum(0).float(), stats.act_sum.float(), rtol=1e-4), \
        "the concept masses of a feature should add up to its total activation"
    lab = torch.from_numpy(labels[: len(f)].astype(np.int64))
    c = 4
    assert torch.allclose(stats.concept_mass[c].float(), f.clamp_min(0)[lab == c].sum(0), rtol=1e-4)


def test_contexts_recompute_the_recorded_activation(small, tmp_path):
    model, sae, _, _, stats = small
    feat = int(stats.max_act.argmax())
    ctxs = contexts(stats, model, sae, feat, stats.top_idx[feat])
    for c, v in zip(ctxs, stats.top_acts[feat]):
        assert abs(c.acts[c.focus] - float(v)) < 1e-5, "a context must be re-run on the window the token was read in"
        assert c.token_ids[c.focus] == int(stats.tokens[c.index])
    stats.save(tmp_path / "s.pt")
    back = FeatureStats.load(tmp_path / "s.pt")
    assert torch.equal(back.top_idx, stats.top_idx) and back.site == SITE


def test_logit_effects_match_a_direct_computation(small):
    model, sae, _, _, _ = small
    i = 7
    with torch.no_grad():
        d = sae.W_dec[i] / sae.input_scale
        resid = model.blocks[0].mlp.c_proj.weight @ d  # the MLP output, bias excluded
        ln = (resid - resid.mean()) * model.ln_f.weight  # LayerNorm without 1/σ and without its bias
        ref = model.lm_head.weight @ ln
        # a real LayerNorm (bias left out) differs only by the positive 1/σ: same ranking
        normed = torch.nn.functional.layer_norm(resid, (len(resid),), model.ln_f.weight, None, model.ln_f.eps)
        ref_ln = model.lm_head.weight @ normed
    eff = logit_effects(model, sae, i, k=5)
    assert [t for t, _ in eff.promoted] == ref.topk(5).indices.tolist()
    assert [t for t, _ in eff.suppressed] == (-ref).topk(5).indices.tolist()
    assert np.allclose([v for _, v in eff.promoted], ref.topk(5).values.numpy(), atol=1e-5)
    assert ref_ln.topk(5).indices.tolist() == ref.topk(5).indices.tolist(), \
        "dropping the LayerNorm's 1/σ must not change the ranking"
    assert torch.allclose(logit_weights(model, sae)[i], ref, atol=1e-5)


def test_search_helpers(small):
    model, sae, _, _, stats = small
    tok = FakeTokenizer()
    by_c = features_for_concept(stats, "dna", k=5, min_fires=1)
    shares = [s for _, s in by_c]
    assert shares == sorted(shares, reverse=True) and len(by_c) == 5
    by_t = features_for_token(stats, model, sae, tok, "t5 ", k=3)
    assert len(by_t) == 3 and by_t[0][1] >= by_t[1][1]
    W = logit_weights(model, sae)
    by_l = features_for_logit_token(model, sae, tok, "t9 ", k=3)
    assert by_l[0][0] == int(W[:, 9].argmax())


def _check_links(folder: Path):
    for page in folder.rglob("*.html"):
        text = page.read_text()
        for ref in re.findall(r'(?:href|src)="([^"]*)"', text):
            if ref.startswith(("data:", "#")):
                continue
            assert not re.match(r"^[a-z]+:", ref), f"{page.name} links outside the folder: {ref}"
            assert (page.parent / unquote(ref)).resolve().is_file(), f"{page.name}: broken link {ref}"


def test_dashboard_escapes_html_and_links_resolve(small, tmp_path):
    model, sae, _, _, stats = small
    tok = FakeTokenizer()
    feats = [int(f) for f in stats.alive.nonzero()[:3, 0]]
    index = build_dashboard(model, sae, tok, stats, tmp_path / "dash", features=feats,
                            title="<script>alert(1)</script>")
    pages = list((tmp_path / "dash").rglob("*.html"))
    assert len(pages) == 1 + len(feats)
    assert any("&lt;script&gt;alert(1)&lt;/script&gt;" in p.read_text() for p in pages)
    for p in pages:
        assert "<script>alert" not in p.read_text(), f"{p.name} has an unescaped token: use html.escape"
    _check_links(tmp_path / "dash")
    assert "features/f" in index.read_text()
    text = format_feature(stats, tok, model, sae, feats[0])
    assert "«" in text and "promotes" in text


class RTLTokenizer(FakeTokenizer):
    """Token 7 is Arabic ("و"), so that right-to-left text sits beside left-to-right text."""

    def token_str(self, i: int) -> str:
        return "و" if i == 7 else super().token_str(i)


def test_dashboard_index_links_every_page_in_the_folder_and_explains_its_columns(small, tmp_path):
    """`dashboard --features 5` adds a page: the index still links the pages of earlier builds,
    says which features have a page, and has a legend of its columns."""
    model, sae, _, _, stats = small
    alive = [int(f) for f in stats.alive.nonzero()[:, 0]]
    out = tmp_path / "dash"
    build_dashboard(model, sae, FakeTokenizer(), stats, out, features=alive[:2])
    index = build_dashboard(model, sae, FakeTokenizer(), stats, out, features=alive[2:3]).read_text()
    for f in alive[:3]:
        assert f'href="features/f{f}.html"' in index, f"feature {f}'s page exists but the index does not link it"
    assert f'href="features/f{alive[3]}.html"' not in index
    assert f"3 of the {len(alive)} alive features have a page" in index
    for term in ["density", "max act", "mean act", "best concept", "share", "top tokens"]:
        assert f"<dt>{term}</dt>" in index, f"the legend does not explain {term!r}"
    _check_links(out)


def test_default_pages_are_every_alive_feature_up_to_a_limit(small):
    from sae.run.dashboard import default_features

    stats = small[4]
    alive = [int(f) for f in stats.alive.nonzero()[:, 0]]
    assert default_features(stats) == alive
    few = default_features(stats, per_concept=1, n_random=3, all_max=5)
    assert 3 <= len(few) < len(alive) and set(few) <= set(alive)


def test_right_to_left_tokens_are_isolated(small, tmp_path):
    """An Arabic token is its own bidirectional run (<bdi>): next to "×20" or Latin tokens it
    would otherwise pull them into right-to-left order ("'20× 'و")."""
    model, sae, _, _, stats = small
    top_tokens = stats.tokens[stats.top_idx.clamp_min(0)]  # (d_sae, top_k)
    f = int((top_tokens == 7).any(1).nonzero()[0, 0])  # a feature with the Arabic token among its top tokens
    index = build_dashboard(model, sae, RTLTokenizer(), stats, tmp_path / "dash", features=[f]).read_text()
    page = (tmp_path / "dash" / "features" / f"f{f}.html").read_text()
    assert "و" in page and "و" in index and re.search(r'<bdi class="t[^"]*"[^>]*>', page)
    assert not re.search(r">[^<]*و", re.sub(r"<bdi[^>]*>[^<]*</bdi>", "", page + index)), "an Arabic token outside <bdi>"


def test_histogram_axis_reaches_the_true_maximum():
    from sae.run.dashboard import histogram_svg

    svg = histogram_svg(torch.tensor([0.5, 1.0, 2.0]), max_act=7.25)
    assert ">7.25</text>" in svg and ">2.00</text>" not in svg and "max" in svg
    assert ">2.00</text>" in histogram_svg(torch.tensor([0.5, 1.0, 2.0]))


def test_dashboard_without_concept_labels_has_no_concept_columns(small, tmp_path):
    """Real text (`--corpus pystdlib`): the index leaves out the concept columns instead of
    showing them empty, and the pages leave out the concept mass."""
    model, sae, tokens, _, _ = small
    stats = feature_stats(model, sae, tokens, None, n_tokens=600, top_k=5, n_samples=30, batch_contexts=4, log=False)
    f = int(stats.alive.nonzero()[0, 0])
    index = build_dashboard(model, sae, FakeTokenizer(), stats, tmp_path / "dash", features=[f]).read_text()
    assert "best concept" not in index and ">share<" not in index and "detects" not in index
    assert "<dt>density</dt>" in index
    page = (tmp_path / "dash" / "features" / f"f{f}.html").read_text()
    assert "concept" not in page


@pytest.fixture(scope="module")
def smoke_dashboard(tmp_path_factory):
    """The dashboard of the smoke preset's shapes: a BPE on toy text, an untrained model and SAE
    (same shapes, same code path as a trained run; training one takes minutes on a busy CPU)."""
    from sae.world.corpus import toy_text, toy_tokens
    from sae.run.config import get_preset
    from sae.tokenizer import Tokenizer

    p = get_preset("smoke")
    out = tmp_path_factory.mktemp("smoke")
    tok = Tokenizer.train(toy_text(p.tokenizer_chars // 3, seed=p.seed), p.gpt.vocab_size)
    torch.manual_seed(0)
    model = GPT(p.gpt_config(tok.vocab_size)).eval()
    sae = SparseAutoencoder(p.sae_config(p.gpt.d_mlp))
    with torch.no_grad():
        sae.b_enc.fill_(0.1)  # untrained: a positive bias makes most features fire
    tokens, labels = toy_tokens(tok, p.eval_tokens + p.gpt.n_ctx, seed=p.seed, split="val")
    stats = feature_stats(model, sae, tokens, labels, n_tokens=p.eval_tokens, log=False)
    build_dashboard(model, sae, tok, stats, out / "dashboard")
    return out / "dashboard"


def test_smoke_dashboard_builds(smoke_dashboard):
    index = (smoke_dashboard / "index.html").read_text()
    assert index.count("<tr>") > 100, "the index should list every alive feature"
    assert len(list((smoke_dashboard / "features").glob("f*.html"))) >= 20
    from sae.world.corpus import CONCEPTS

    assert any(f">{c}<" in index for c in CONCEPTS), "the index should name each feature's best concept"
    _check_links(smoke_dashboard)


def test_screenshot_of_index_and_a_feature_page(smoke_dashboard, tmp_path):
    """A real browser renders the dashboard (skipped where Debian's chromium is not installed)."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("no /usr/bin/chromium")
    page = sorted((smoke_dashboard / "features").glob("f*.html"))[0]
    for i, target in enumerate([smoke_dashboard / "index.html", page]):
        shot = tmp_path / f"shot{i}.png"
        subprocess.run([str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", f"--user-data-dir={tmp_path / f'profile{i}'}",
                        f"--screenshot={shot}", "--window-size=1200,900", f"file://{target}"],
                       capture_output=True, timeout=60)
        assert shot.exists() and shot.stat().st_size > 5000, f"chromium did not render {target.name}"
