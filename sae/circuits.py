"""Attribution graphs: one prompt's prediction traced through transcoder features (Circuit Tracing, 2025).

Anthropic's "Circuit Tracing" (Ameisen et al. 2025) explains one next-token prediction with a
*local replacement model*: on that prompt, every MLP is replaced by a transcoder (here one skip
transcoder per layer, `SAEConfig.target_site`), and what makes the rest of the model non-linear is
frozen at its value on the prompt:

    LN(x)   = (x - mean(x)) / σ · γ + β            # σ: the prompt's, held fixed
    attn(x) = concat_h(P_h @ (LN_1(x) W_V,h + b_V,h)) W_O + b_O     # P_h: the prompt's attention pattern
    MLP(u)  → f @ W_dec / t + b_dec / t + u·s @ W_skip / t + e       # f: the prompt's features, held fixed

where e = MLP(u) − (the transcoder's prediction), the *error node* of each position, puts back
what the transcoder misses. With f, σ, P and e at their prompt values the replacement computes
the model's logits exactly (`test_circuits.py`), and it is affine in its inputs: the embeddings
x_0[p] = W_E[t_p] + W_pos[p], the features' activations a and the errors e.

The graph's nodes are those inputs (one per token position, one per active feature (layer,
position, index), one error per (layer, position)) and its targets: each active feature's
pre-activation and the target token's logit at the last position. An edge's weight is the
source's *direct* effect on the target through the frozen linear paths (attention, LayerNorm,
the skip path, the residual stream), with every feature in between held at its value:

    w(s → t) = (∂ v_t / ∂ x_s) · x_s               # x_s: the source's value (a scalar a, or a vector)

Since the replacement is affine in x_s, setting a source to zero changes its target by exactly
−w(s → t) (tested). A feature's incoming edges sum to its pre-activation minus the biases' share.

Pruning and scores follow `safety-research/circuit-tracer` (`graph.py`): with Â the adjacency
with each row's absolute values normalised to sum 1 (rows: targets, columns: sources), a node's
influence on the logit is its entry in l·(Â + Â² + ...), l the logit's one-hot row; keep the nodes
that carry `node_threshold` (0.8) of the total influence, then the edges that carry
`edge_threshold` (0.98) of the influence of the pruned graph. The *replacement score* is the share
of the influence of the inputs (tokens and errors) that the tokens hold; the *completeness score*
the influence-weighted share of each node's normalised inputs that does not come from errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from sae.autoencoder import SparseAutoencoder
from sae.gpt import GPT


@dataclass
class Graph:
    """One prompt's attribution graph. Nodes in the order [features, errors, tokens, logit]; the
    adjacency's rows are targets, its columns sources (zero rows for errors and tokens)."""

    tokens: list[int]  # the prompt
    target: int  # the token whose logit at the last position is explained
    logit: float  # its value in the model (= the replacement's)
    features: list[tuple[int, int, int]]  # (layer, position, index) of each active feature
    activations: Tensor  # (n_features,) their values
    n_layers: int
    adjacency: Tensor  # (n_nodes, n_nodes)
    node_mask: Tensor | None = None  # after `prune`: the nodes kept
    edge_mask: Tensor | None = None  # after `prune`: the edges kept
    influence: Tensor | None = None  # (n_nodes,) each node's influence on the logit
    scores: dict = field(default_factory=dict)  # replacement and completeness

    @property
    def n_pos(self) -> int:
        return len(self.tokens)

    def kind(self, node: int) -> str:
        """'feature', 'error', 'token' or 'logit'."""
        n_f, n_e = len(self.features), self.n_layers * self.n_pos
        return ("feature" if node < n_f else "error" if node < n_f + n_e else
                "token" if node < n_f + n_e + self.n_pos else "logit")

    def describe(self, node: int) -> tuple:
        """(kind, layer, position, index) of a node (-1 where it does not apply)."""
        n_f, n_e = len(self.features), self.n_layers * self.n_pos
        kind = self.kind(node)
        if kind == "feature":
            return ("feature", *self.features[node])
        if kind == "error":
            layer, pos = divmod(node - n_f, self.n_pos)
            return ("error", layer, pos, -1)
        if kind == "token":
            return ("token", -1, node - n_f - n_e, -1)
        return ("logit", -1, self.n_pos - 1, self.target)


def _check(model: GPT, transcoders: dict[int, SparseAutoencoder]) -> None:
    for layer in range(model.cfg.n_layer):
        tc = transcoders.get(layer)
        want = (f"blocks.{layer}.mlp.hook_in", f"blocks.{layer}.mlp.hook_out")
        if tc is None or (tc.cfg.site, tc.cfg.target_site) != want:
            raise ValueError(f"an attribution graph replaces every MLP: layer {layer} needs a transcoder from "
                             f"{want[0]} to {want[1]} (python -m sae train-sae --set sae.site={want[0]} "
                             f"--set sae.target_site={want[1]})")


def _frozen_ln(ln: torch.nn.LayerNorm, x: Tensor, sigma: Tensor) -> Tensor:
    return (x - x.mean(-1, keepdim=True)) / sigma * ln.weight + ln.bias


def _sigma(ln: torch.nn.LayerNorm, x: Tensor) -> Tensor:
    """The denominator LayerNorm computes on x, (T, 1), detached: what the replacement holds fixed."""
    return (x.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt().detach()


def _frozen_attention(attn, x: Tensor, pattern: Tensor) -> Tensor:
    """The attention block's output for normalised inputs x (T, C) with the heads' patterns fixed."""
    T, C = x.shape
    H = attn.n_head
    w, b = attn.c_attn.weight[2 * C:], attn.c_attn.bias[2 * C:]  # the value projection
    v = (x @ w.T + b).view(T, H, C // H).transpose(0, 1)  # (H, T, hs)
    return attn.c_proj((pattern @ v).transpose(0, 1).reshape(T, C))


def _pattern(attn, x: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(hs) + causal mask): (H, T, T), as the model's attention computes it."""
    T, C = x.shape
    H = attn.n_head
    q, k, _ = (t.view(T, H, C // H).transpose(0, 1) for t in attn.c_attn(x).split(C, dim=1))
    scores = q @ k.transpose(1, 2) / (C // H) ** 0.5
    mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    return scores.masked_fill(~mask, float("-inf")).softmax(-1).detach()


class Replacement:
    """The local replacement model of `model` on one prompt (module docstring). `run(emb, feats,
    errs)` computes (the MLP inputs per layer, the logits) from the graph's input values;
    `self.emb`, `self.feats`, `self.errs` are the prompt's."""

    def __init__(self, model: GPT, transcoders: dict[int, SparseAutoencoder], tokens: Tensor):
        _check(model, transcoders)
        self.model, self.tcs = model, transcoders
        dev = next(model.parameters()).device
        tokens = tokens.to(dev)
        self.sigma1, self.sigma2, self.patterns, self.feats, self.errs = [], [], [], [], []
        with torch.no_grad():
            x = model.wte(tokens) + model.wpe(torch.arange(len(tokens), device=dev))
            self.emb = x.clone()
            for layer, block in enumerate(model.blocks):  # the clean forward pass, recording what is frozen
                self.sigma1.append(_sigma(block.ln_1, x))
                h = block.ln_1(x)
                self.patterns.append(_pattern(block.attn, h))
                x = x + block.attn(h[None])[0]
                self.sigma2.append(_sigma(block.ln_2, x))
                u = block.ln_2(x)
                y = block.mlp(u)
                tc = transcoders[layer]
                f = tc.encode(u)
                self.feats.append(f)
                self.errs.append(y - tc.predict(u, f))
                x = x + y
            self.sigma_f = _sigma(model.ln_f, x)

    def run(self, emb: Tensor, feats: list[Tensor], errs: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        """(the MLP inputs u of every layer, (T, d_model) each; the logits (T, vocab))."""
        x, inputs = emb, []
        for layer, block in enumerate(self.model.blocks):
            h = _frozen_ln(block.ln_1, x, self.sigma1[layer])
            x = x + _frozen_attention(block.attn, h, self.patterns[layer])
            u = _frozen_ln(block.ln_2, x, self.sigma2[layer])
            inputs.append(u)
            x = x + self.tcs[layer].predict(u, feats[layer]) + errs[layer]
        return inputs, self.model.lm_head(_frozen_ln(self.model.ln_f, x, self.sigma_f))

    def pre_acts(self, layer: int, u: Tensor) -> Tensor:
        """The transcoder's pre-activations of the MLP inputs u (T, d_in)."""
        tc = self.tcs[layer]
        return tc.pre_acts(u * tc.input_scale)


def attribute(model: GPT, transcoders: dict[int, SparseAutoencoder], tokens: Tensor | list[int],
              target: int) -> Graph:
    """The unpruned attribution graph of the logit of `target` after `tokens` (module docstring)."""
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    if tokens.dim() != 1 or len(tokens) == 0:
        raise ValueError(f"attribute takes one prompt, a 1-D list of token ids, got shape {tuple(tokens.shape)}")
    if len(tokens) > model.cfg.n_ctx:
        raise ValueError(f"the prompt has {len(tokens)} tokens, more than the model's context n_ctx={model.cfg.n_ctx}: "
                         f"keep its last {model.cfg.n_ctx} (tokens[-{model.cfg.n_ctx}:])")
    if not 0 <= int(target) < model.cfg.vocab_size:
        raise ValueError(f"target {target} is not a token id of the model (0 to {model.cfg.vocab_size - 1})")
    rep = Replacement(model, transcoders, tokens)
    L, T = model.cfg.n_layer, len(tokens)
    active = [f.nonzero().tolist() for f in rep.feats]  # per layer: [(position, index), ...]
    features = [(layer, p, i) for layer in range(L) for p, i in active[layer]]
    acts = torch.tensor([float(rep.feats[layer][p, i]) for layer, p, i in features])
    n_f = len(features)
    n = n_f + L * T + T + 1
    emb = rep.emb.clone().requires_grad_()
    feats = [f.clone().requires_grad_() for f in rep.feats]
    errs = [e.clone().requires_grad_() for e in rep.errs]
    inputs, logits = rep.run(emb, feats, errs)
    adjacency = torch.zeros(n, n)
    leaves = [emb, *feats, *errs]
    start = [sum(len(a) for a in active[:layer]) for layer in range(L)]
    # the targets: each active feature's pre-activation (layer by layer), then the logit
    targets = [(row, rep.pre_acts(layer, inputs[layer][p:p + 1])[0, i])
               for row, (layer, p, i) in enumerate(features)] + [(n - 1, logits[-1, target])]
    for row, value in targets:
        grads = torch.autograd.grad(value, leaves, retain_graph=True, allow_unused=True)
        g_emb, g_feats, g_errs = grads[0], grads[1:1 + L], grads[1 + L:]
        for layer in range(L):
            if g_feats[layer] is not None and active[layer]:
                idx = torch.tensor(active[layer]).T
                adjacency[row, start[layer]:start[layer] + len(active[layer])] = \
                    (g_feats[layer][idx[0], idx[1]] * rep.feats[layer][idx[0], idx[1]]).detach().cpu()
            if g_errs[layer] is not None:
                adjacency[row, n_f + layer * T:n_f + (layer + 1) * T] = (g_errs[layer] * rep.errs[layer]).sum(-1).detach().cpu()
        if g_emb is not None:
            adjacency[row, n_f + L * T:n_f + L * T + T] = (g_emb * rep.emb).sum(-1).detach().cpu()
    return Graph(tokens.tolist(), int(target), float(logits[-1, target].detach()), features, acts, L, adjacency)


def _normalised(adjacency: Tensor) -> Tensor:
    """|A| with each row scaled to sum 1 (rows that are all zero stay zero)."""
    a = adjacency.abs()
    return a / a.sum(1, keepdim=True).clamp_min(1e-10)


def influence(adjacency: Tensor) -> Tensor:
    """Each node's influence on the logit (the last node): l·(Â + Â² + ...) with Â = `_normalised`.
    The graph is acyclic (a node's inputs come from earlier layers), so the series ends."""
    a = _normalised(adjacency)
    current = a[-1].clone()
    total = current.clone()
    for _ in range(len(a)):
        current = current @ a
        if not bool(current.any()):
            return total
        total += current
    raise ValueError("the adjacency has a cycle: influence does not converge")


def _threshold(scores: Tensor, share: float) -> float:
    """The smallest score among the largest ones that together hold `share` of the sum."""
    ordered = scores.flatten().sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum().clamp_min(1e-30)
    return float(ordered[min(int(torch.searchsorted(cumulative, share)), len(ordered) - 1)])


def prune(graph: Graph, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Graph:
    """Keep the feature and error nodes that carry `node_threshold` of the influence on the logit
    (tokens and the logit always stay), then the edges that carry `edge_threshold` of the pruned
    graph's edge influence; drop feature and error nodes left without an outgoing edge, and
    features left without an incoming one, until nothing changes. Fills the graph's masks,
    influence and scores, and returns it."""
    for name, value in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} is a share of the influence, in [0, 1], got {value}")
    A, n = graph.adjacency, len(graph.adjacency)
    n_f, n_inner = len(graph.features), len(graph.features) + graph.n_layers * graph.n_pos
    node_inf = influence(A)
    keep = node_inf >= _threshold(node_inf[:n_inner], node_threshold) if n_inner else torch.zeros(n, dtype=torch.bool)
    keep[n_inner:] = True
    pruned = A * keep[:, None] * keep[None, :]
    a = _normalised(pruned)
    out = influence(pruned)
    out[-1] += 1.0  # the logit's own weight
    edge_scores = a * out[:, None]
    edges = (edge_scores >= _threshold(edge_scores, edge_threshold)) & (pruned != 0)
    while True:
        before = keep.clone()
        edges &= keep[:, None] & keep[None, :]
        keep[:n_inner] &= edges[:, :n_inner].any(0)  # a feature or error must feed something
        keep[:n_f] &= edges[:n_f].any(1)  # and a feature must be fed
        if torch.equal(keep, before):
            break
    graph.node_mask, graph.edge_mask, graph.influence = keep, edges, node_inf
    graph.scores = scores(graph)
    return graph


def scores(graph: Graph) -> dict:
    """circuit-tracer's replacement and completeness scores of the unpruned graph (module docstring)."""
    A = graph.adjacency
    n_f, n_e = len(graph.features), graph.n_layers * graph.n_pos
    a = _normalised(A)
    inf = influence(A)
    tokens, errors = inf[n_f + n_e:-1].sum(), inf[n_f:n_f + n_e].sum()
    weight = inf.clone()
    weight[-1] += 1.0
    non_error = 1 - a[:, n_f:n_f + n_e].sum(1)
    return {"replacement": float(tokens / (tokens + errors).clamp_min(1e-30)),
            "completeness": float((non_error * weight).sum() / weight.sum())}


def ablation_check(model: GPT, transcoders: dict[int, SparseAutoencoder], graph: Graph, top: int = 20) -> dict:
    """The graph's prediction against the model, for the `top` feature nodes of most influence.

    Predicted: the logit's change when feature s is removed, in the linearised replacement with
    the features downstream of s free to respond (each active feature passes its input change on
    with slope 1): Δ = −a_s · [J (I − J_ff)⁻¹]_{logit, s}, J = the adjacency divided by the
    source's activation (∂target/∂a_s). Measured: the real model (its own MLPs, attention and
    LayerNorms) with a_s · W_dec[s] / t taken out of the MLP's output at s's layer and position.
    Returns the pairs and their Pearson correlation."""
    n_f = len(graph.features)
    if n_f == 0:
        raise ValueError("the graph has no active feature: nothing to ablate")
    J = graph.adjacency[:, :n_f] / graph.activations.clamp_min(1e-12)  # (n, n_f): ∂target / ∂a_source
    total = J[-1] @ torch.linalg.inv(torch.eye(n_f) - J[:n_f])  # (n_f,): d logit / d a_s, all paths
    node_inf = graph.influence if graph.influence is not None else influence(graph.adjacency)
    chosen = node_inf[:n_f].argsort(descending=True)[:top].tolist()
    dev = next(model.parameters()).device
    tokens = torch.tensor(graph.tokens, device=dev)[None]
    predicted, measured = [], []
    with torch.no_grad():
        for s in chosen:
            layer, p, i = graph.features[s]
            tc = transcoders[layer]
            contribution = graph.activations[s] * tc.W_dec[i] / tc.output_scale

            def remove(act, p=p, c=contribution):
                act = act.clone()
                act[0, p] -= c.to(act.dtype)
                return act

            with model.hooks({f"blocks.{layer}.mlp.hook_out": remove}):
                after = float(model(tokens)[0, -1, graph.target])
            predicted.append(-float(graph.activations[s] * total[s]))
            measured.append(after - graph.logit)
    pred, meas = torch.tensor(predicted), torch.tensor(measured)
    corr = float(torch.corrcoef(torch.stack([pred, meas]))[0, 1]) if len(pred) > 1 else float("nan")
    return {"features": [graph.features[s] for s in chosen], "predicted": predicted, "measured": measured,
            "correlation": corr}
