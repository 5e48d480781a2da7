"""The dictionary as a dictionary: how well it reconstructs, how sparse it is, and what splicing it in costs.

The evaluation analysis of every run (labelled or not): the `Evaluator`'s numbers over the held-out
pass (formulas in `sae.evaluation.formulas`), with the warnings of a degenerate SAE (`degenerate`),
beside the papers' figures (Towards Monosemanticity run A/1; Anthropic's April 2024 update, 1L MLP, λ = 10).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sae.markdown import Headline, code, num, text

NAME = "sae"

PAPER = {"l0": "20.1 (April update, 1L MLP, λ=10)", "nmse": "0.131 (April update, λ=10)",
         "ce_recovered_zero": "0.79 (Towards Monosemanticity A/1); 0.914 (April update, λ=10)",
         "dead_fraction": "168 / 4,096 = 4.1% (A/1)"}


@dataclass
class Result:
    site: str
    arch: str
    d_sae: int
    n_tokens: int
    mse: float
    fvu: float
    explained_variance: float
    nmse: float
    l0: float
    l1: float
    dead_fraction: float
    ultralow_fraction: float
    dense_fraction: float
    ce_clean: float
    ce_sae: float
    ce_zero_ablation: float
    ce_mean_ablation: float
    ce_recovered_zero: float
    ce_recovered_mean: float
    ce_added_nats: float
    kl: float
    warnings: list[str] = field(default_factory=list)  # why the numbers mean nothing, if they do not (`degenerate`)


def run(p) -> Result:
    """The `Evaluator`'s numbers of the held-out pass `p` (`sae.evaluation.evaluate.Pass`)."""
    cfg = p.sae.cfg
    m = p.evaluation.metrics
    return Result(site=cfg.site, arch=cfg.arch, d_sae=cfg.d_sae, **m, warnings=degenerate(m))


def degenerate(s: dict) -> list[str]:
    """What makes an SAE's evaluation meaningless, one sentence each (empty when it is sound): every
    feature dead, FVU >= 1, or CE recovered outside [−1, 1.5], where the ablation barely changes the
    loss (a tiny denominator: a corpus the model cannot read, e.g. one 28 MB line, gives 3.0)."""
    out = []
    if s["dead_fraction"] >= 1.0 or s["l0"] == 0:
        out.append(f"every feature is dead on the held-out text (L0 {s['l0']:.1f}): the SAE learned nothing")
    elif s["fvu"] >= 1.0:
        out.append(f"FVU {s['fvu']:.2f} >= 1: the SAE reconstructs no better than the mean activation")
    for key in ("ce_recovered_zero", "ce_recovered_mean"):
        if not -1.0 <= s[key] <= 1.5:
            out.append(f"{key} {s[key]:.2f} is outside [-1, 1.5]: the ablation barely changes the loss "
                       f"({s['ce_clean']:.3f} clean vs {s['ce_zero_ablation']:.3f} zero-ablated), so the ratio means nothing")
    return out


def headline(r: Result) -> list[Headline]:
    return [Headline("l0", "L0 (features active per token; lower is sparser)", r.l0, ".1f", PAPER["l0"]),
            Headline("nmse", "NMSE of the reconstruction", r.nmse, ".3f", PAPER["nmse"]),
            Headline("fvu", "FVU (variance unexplained)", r.fvu),
            Headline("ce_recovered", "CE loss recovered (zero-ablation; 1 is perfect)", r.ce_recovered_zero, ".3f",
                     PAPER["ce_recovered_zero"]),
            Headline("dead_fraction", "dead features (never fire on held-out text)", r.dead_fraction, ".1%",
                     PAPER["dead_fraction"])]


def section(r: Result, page) -> list[str]:
    rows = [("L0 (active features / token)", "l0"), ("FVU", "fvu"), ("NMSE", "nmse"),
            ("CE loss recovered (zero-ablation)", "ce_recovered_zero"),
            ("CE loss recovered (mean-ablation)", "ce_recovered_mean"),
            ("CE added by the splice (nats/token)", "ce_added_nats"), ("KL (nats/token)", "kl"),
            ("dead fraction", "dead_fraction"), ("ultralow fraction (< 1e-5)", "ultralow_fraction"),
            ("dense fraction (> 10%)", "dense_fraction")]
    return (["## Sparse autoencoder", "",
             f"{text(r.arch)} SAE with {num(r.d_sae)} features on {code(r.site)}, evaluated on {r.n_tokens:,} held-out "
             "tokens.", "", "| metric | ours | paper |", "|---|---|---|"]
            + [f"| {label} | {num(getattr(r, k))} | {PAPER.get(k, '')} |" for label, k in rows] + [""])
