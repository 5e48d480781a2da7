# %% [markdown]
# # Chapter 11 — Circuits: a transcoder that replaces the MLP, and attribution graphs through it
#
# **Goal.** Go from *what* a model represents (features) to *how* it computes one prediction:
# replace the MLP by a sparse, readable computation, trace a prompt's next token through it,
# and check the trace against what our world planted, which no one can do on Claude.
#
# **Transcoders.** An SAE reconstructs an activation from itself. A *transcoder* (Dunefsky et al.
# 2024) reads the MLP's input x and predicts the MLP's output y, so its features stand in for the
# MLP's computation; a *skip transcoder* (Paulo, Shabalin & Belrose 2025) adds a linear path for
# the part of the map that is linear, which its features then need not carry:
#
#     f  = σ(x_s W_enc + b_enc)
#     ŷ_s = f W_dec + b_dec + x_s W_skip                    # x_s, y_s: the scaled input and target
#     loss = mean_batch ‖y_s − ŷ_s‖² + λ S(f)
#
# In this library a transcoder *is* an SAE with another target (`SAEConfig.target_site`), so
# every σ of chapter 10 works and the same trainer trains it, on buffer rows `[x | y]`. The
# MLP's input and output are the hook sites `blocks.0.mlp.hook_in` (`ln_2` of the residual
# stream) and `blocks.0.mlp.hook_out` (what the MLP adds to it):
#
#     python -m sae train-sae --run runs/tiny --name tc --set sae.site=blocks.0.mlp.hook_in \
#         --set sae.target_site=blocks.0.mlp.hook_out --set sae.arch=topk --set sae.k=17
#
# `python -m sae reproduce` trains this one in its `circuits` stage (k: the SAE's held-out L0,
# 17 on the default run) and runs this chapter's checks into `circuits.json` and the report; the
# cell below trains it only where the run has none yet.
#
# **Attribution graphs** (Anthropic's "Circuit Tracing", 2025). On one prompt, freeze what makes
# the rest of the model non-linear (the attention patterns and the LayerNorm denominators), put
# the transcoder in the MLP's place and add an *error node* per position holding what it
# misses. This *local replacement model* computes the model's logits exactly and is affine in
# its inputs (the token embeddings, the features' activations, the errors), so a source's
# *direct effect* on a target is one number, the edge:
#
#     w(s → t) = (∂ v_t / ∂ x_s) · x_s
#
# Pruning keeps the nodes and edges that carry most of the influence on the logit
# (`safety-research/circuit-tracer`'s rule; `sae/circuits.py` has the formulas).

# %%
import json

import torch

import exercises.ch11
from common import FAST, PRESET, RUN
from sae.circuits import Replacement, ablation_check, attribute, prune
from sae.circuit_checks import bridge_cuts, golden_gate_check, top_concepts, unsafe_code_check
from sae.run import load_run, load_sae, reproduce, run_feature_stats, sae_path, train_sae_on_run, with_overrides, \
    write_evaluation
from sae.run.circuit_page import top_nodes, write_circuit

reproduce(PRESET, RUN, until="evaluate")
tok, model = load_run(RUN)
TC = with_overrides(PRESET, ["sae.site=blocks.0.mlp.hook_in", "sae.target_site=blocks.0.mlp.hook_out",
                             "sae.arch=topk", "sae.k=17"])
if not sae_path(RUN, "tc").exists():
    train_sae_on_run(TC, RUN, "tc")
if not (RUN / "tc_metrics.json").exists():
    write_evaluation(TC, RUN, "tc")
tc = load_sae(RUN, "tc").eval()

# %% [markdown]
# ## The transcoder beside the SAE
# Both are judged by what splicing them in costs: the SAE replaces the MLP's *neurons* with its
# reconstruction, the transcoder replaces the whole *MLP* with its prediction. Their FVUs measure
# different targets (the neurons, the MLP's output), and so do their "CE recovered" (zero-ablating
# the neurons leaves the MLP's output bias, zero-ablating the output does not); the extra loss
# in nats and the KL to the clean model compare them on the same footing. The run's SAE is
# chapter 5's ReLU SAE; against a TopK SAE at the same L0 on five seeds (docs/circuits.md) the
# transcoder adds about as much loss.

# %%
sae_m, tc_m = (json.loads((RUN / f).read_text()) for f in ("metrics.json", "tc_metrics.json"))
rows = {"SAE (neurons)": sae_m, "transcoder (MLP)": tc_m}
print(f"{'':<18} {'L0':>5} {'FVU':>6} {'CE added (nats)':>16} {'KL':>7} {'dead':>6} {'detectors':>10} {'absorbed':>9}")
for name, m in rows.items():
    s = m["sae"]
    print(f"{name:<18} {s['l0']:>5.1f} {s['fvu']:>6.3f} {s['ce_added_nats']:>16.4f} {s['kl']:>7.4f} "
          f"{s['dead_fraction']:>6.1%} {m['concepts']['detectors']['features']:>10} "
          f"{m['ground_truth']['absorbed']:>9.1%}")
gap = tc_m["sae"]["ce_added_nats"] - sae_m["sae"]["ce_added_nats"]
print(f"replacing the whole MLP costs {abs(gap):.4f} nats {'more' if gap > 0 else 'less'} than replacing its neurons")

# %% [markdown]
# ## Exercise: write the skip transcoder
# **Difficulty** ●●○○○ **Importance** ●●●○○ — the model every graph below runs through.
#
# Write `skip_transcoder(x_s, y_s, W_enc, b_enc, W_dec, b_dec, W_skip, l1)` with a ReLU as σ,
# returning `(y_hat, loss)`:
#
#     f     = ReLU(x_s @ W_enc + b_enc)                      # (B, d_sae)
#     y_hat = f @ W_dec + b_dec + x_s @ W_skip               # (B, d_out)
#     loss  = mean over the batch of Σ_j (y_s − y_hat)²_j + l1 · mean over the batch of Σ_i f_i
#
# The check names five classic mistakes (the skip left out, the input taken as the target, the
# SAE's pre-encoder bias kept, the skip reading the target, the error averaged over dimensions).

# %%
def skip_transcoder(x_s, y_s, W_enc, b_enc, W_dec, b_dec, W_skip, l1):
    """Your code here: return (y_hat, loss) as above."""
    return None


exercises.ch11.SKIP_TRANSCODER.check(skip_transcoder)
with torch.no_grad():  # yours beside the library's, on the run's own MLP inputs and outputs
    _, cache = model.run_with_cache(torch.tensor([bridge_cuts(tok, 1)[0]["ids"]]),
                                    ["blocks.0.mlp.hook_in", "blocks.0.mlp.hook_out"])
    x, y = cache["blocks.0.mlp.hook_in"][0], cache["blocks.0.mlp.hook_out"][0]
    mine = skip_transcoder(x * tc.input_scale, y * tc.target_scale, tc.W_enc, tc.b_enc, tc.W_dec, tc.b_dec,
                           tc.W_skip, 0.0)
    if mine is not None:  # (a ReLU where the library's σ is TopK: the predictions differ by the features TopK drops)
        print(f"your prediction vs the library's: largest difference {(mine[0] / tc.target_scale - tc(x, target=y).x_hat).abs().max():.3f}")

# %% [markdown]
# ## One prompt's graph
# A held-out Golden Gate sentence cut right before " Bridge". The graph's nodes are the prompt's
# tokens, the transcoder's active features (orange on the page; each links to its dashboard
# page) and one error node per position; the page draws the pruned graph, tokens along the
# bottom.

# %%
cut = bridge_cuts(tok, 1)[0]
graph = prune(attribute(model, {0: tc}, cut["ids"], cut["target"]))
stats = run_feature_stats(RUN, "tc")
page = write_circuit(RUN / "circuits", graph, model, tok, tc, stats, "a Golden Gate prompt")
print(f"{tok.decode(cut['ids'][1:])!r} -> {tok.decode([cut['target']])!r}: logit {graph.logit:.2f}, "
      f"{int(graph.node_mask.sum())} of {len(graph.adjacency)} nodes kept, replacement score "
      f"{graph.scores['replacement']:.3f}, completeness {graph.scores['completeness']:.3f}")
for kind, layer, pos, text, index, inf, direct in top_nodes(graph, tok, 8):
    print(f"  {kind:<8} position {pos:>3} {text!r:<14} {'feature ' + str(index) if kind == 'feature' else '':<13} "
          f"influence {inf:.3f}, direct effect on the logit {direct:+.3f}")
print(f"the page: {page}")

# %% [markdown]
# ## Exercise: one edge by hand
# **Difficulty** ●●●○○ **Importance** ●●●○○ — what an edge *is*.
#
# In a one-layer model a feature at the last position writes a · d into the residual stream
# (d = its decoder row in raw units, `W_dec[i] / t`), and the logit reads the stream through
# the final LayerNorm, frozen at the prompt's σ, and the unembedding row w_u of the target:
#
#     logit = w_u · ((x − mean(x)) / σ ⊙ γ + β)
#
# Write `edge_to_logit(a, d, gamma, sigma, w_u)`, the feature's direct effect on the logit: the
# change of the logit when a · d is removed from x. Then it is checked against the graph's edge.

# %%
def edge_to_logit(a, d, gamma, sigma, w_u):
    """Your code here: the feature's direct effect on the logit (a float)."""
    return None


exercises.ch11.EDGE_TO_LOGIT.check(edge_to_logit)
last = [s for s, (_, p, _) in enumerate(graph.features) if p == graph.n_pos - 1]
s = max(last, key=lambda s: float(graph.influence[s]))
_, _, i = graph.features[s]
rep = Replacement(model, {0: tc}, torch.tensor(graph.tokens))
with torch.no_grad():
    yours = edge_to_logit(float(graph.activations[s]), tc.W_dec[i] / tc.target_scale, model.ln_f.weight,
                          float(rep.sigma_f[-1]), model.lm_head.weight[graph.target])
if yours is not None:
    print(f"feature {i}: your edge {float(yours):+.4f}, the graph's {float(graph.adjacency[-1, s]):+.4f}")

# %% [markdown]
# ## Checked against the world
# - **Golden Gate**: over held-out bridge cuts, the share of the pruned graph's feature influence
#   held by features whose top concept is `golden_gate`.
# - **Unsafe code**: the world writes a posture comment above every security switch, and the
#   model reads it there. Cut insecure files before a switch's value (target: the insecure
#   value): where does the comment's best token rank among the prompt's tokens by influence?
#   And in safe files, for the safe value?
# - **Ablation check**: for each graph's top 20 features, the logit change the graph predicts
#   when the feature is removed against the change in the real model (its own MLP and
#   LayerNorms): their correlation.

# %%
n = 5 if FAST else 20
tops = top_concepts(stats.concept_mass)
gg = golden_gate_check(model, {0: tc}, tok, tops, n_prompts=n)
unsafe = unsafe_code_check(model, {0: tc}, tok, n_files=n)
safe = unsafe_code_check(model, {0: tc}, tok, n_files=n, concept="code")
print(f"Golden Gate: {gg['golden_gate_share']:.0%} of the pruned feature influence is golden_gate features' "
      f"({gg['n_prompts']} prompts; replacement {gg['replacement']:.3f}, ablation r = {gg['ablation_correlation']:.2f})")
for name, r in (("insecure files -> insecure value", unsafe), ("safe files -> safe value", safe)):
    print(f"{name}: the posture comment among the top 3 input tokens on {r['comment_in_top3']:.0%} of "
          f"{r['n_cuts']} cuts (median rank {r['median_rank']:.0f}; ablation r = {r['ablation_correlation']:.2f})")

# %% [markdown]
# ## Exercise: read the unsafe-code graphs
# **Difficulty** ●○○○○ **Importance** ●●○○○
#
# `unsafe["ranks"]` holds, for each insecure cut, the rank of the posture comment's best token
# among the prompt's tokens (1 = the most influential). On how many cuts is the comment among
# the top 3? Compare with the safe files: does the graph say the model writes `True` because of
# the comment too?

# %%
answer = None  # your count
exercises.ch11.check_comment_rank(answer, unsafe["ranks"])
