"""The streaming evaluator: reconstruction, sparsity, CE and concept statistics of a dictionary over held-out text,
without holding the activations (the formulas are `sae.evaluation.formulas`'s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sae.evaluation.detectors import ConceptHistogram, Detectors, MeanDiffProbe, SegmentPeaks
from sae.evaluation.formulas import ce_recovered, density_summary
from sae.evaluation.held_out import HeldOutBatch, first_half_rows, held_out_batches, unit_site


@dataclass
class Evaluation:
    """Everything `Evaluator` measured (scalars in `metrics`, per-feature arrays alongside)."""

    metrics: dict
    fire_count: Tensor  # (d_sae,) tokens on which each feature fired
    max_act: Tensor  # (d_sae,) largest activation seen
    features: ConceptHistogram | None
    neurons: ConceptHistogram | None
    probe: MeanDiffProbe | None = None  # a mean-difference linear probe on the neurons (`unit_site`)
    feature_detectors: Detectors | None = None
    neuron_detectors: Detectors | None = None


class Evaluator:
    """Streams `HeldOutBatch`es (`add`) into reconstruction, sparsity, CE and concept metrics (`result`).

    Sums are kept in float64 and turned into the formulas at the end: with S_e = Σ‖x − x̂‖²,
    S_x = Σ‖x‖² and m = Σx / n, the centred sum is Σ‖x − m‖² = S_x − n‖m‖², so
    fvu = S_e / (S_x − n‖m‖²) and nmse = S_e / S_x over every token, exactly as `fvu` and `nmse`
    on the materialised activations (tested); l0 = Σ_i fire_i / n. A transcoder's x in these is its
    target y, and its losses splice its prediction in at the target site (the MLP *replaced*).
    `mean_act` (d_in, or d_out) is the mean-ablation baseline (None: the mean of the first batch). Everything accumulates on the
    SAE's device until `result()`. Memory: one batch, three logits buffers (the whole batch's on a
    GPU, `CPU_LOGITS` each on a CPU) and the concept accumulators (of which the segment peaks and
    the probe's scores grow with the tokens)."""

    def __init__(self, model, sae, n_concepts: int = 0, mean_act: Tensor | None = None,
                 neurons: bool = True, drop_first: int = 1):
        self.model, self.sae, self.drop_first, self.mean_act = model, sae, drop_first, mean_act
        d_sae = sae.cfg.d_sae
        dev = self.device = next(sae.parameters()).device
        self.fire = torch.zeros(d_sae, dtype=torch.int64, device=dev)
        self.max_act = torch.zeros(d_sae, device=dev)
        self.features = ConceptHistogram(d_sae, n_concepts, device=dev) if n_concepts else None
        d_units = unit_site(model, sae)[1]  # the neurons: an SAE's input, a transcoder's MLP neurons
        self.neurons = ConceptHistogram(d_units, n_concepts, device=dev) if n_concepts and neurons else None
        self.probe = MeanDiffProbe(d_units, n_concepts, device=dev) if n_concepts else None
        self.feature_peaks = SegmentPeaks(d_sae, device=dev) if n_concepts else None
        self.neuron_peaks = SegmentPeaks(d_units, device=dev) if n_concepts and neurons else None
        self.x_sum = torch.zeros(sae.d_out, dtype=torch.float64, device=dev)  # of the targets (an SAE's: x)
        # running sums as float64 tensors on the device: a .item() per batch would wait for the GPU
        self.sums = {k: torch.zeros((), dtype=torch.float64, device=dev)
                     for k in ("sq_err", "sq_x", "l1", "ce_clean", "ce_sae", "ce_zero", "ce_mean", "kl")}
        self.n = self.n_pred = 0
        self.scratch = None  # the logits' buffers of `_add_losses`

    # logits computed at once on a CPU: 16 MB of float32, about a last-level cache (fewer rows run
    # the unembedding slower): time 2**21 and 2**23 with `benchmarks.bench_evaluate` to change it
    CPU_LOGITS = 2 ** 22

    def _add_losses(self, b: HeldOutBatch, x_hat: Tensor) -> None:
        """Next-token losses with the site's activations at positions >= d = drop_first clean,
        replaced by the SAE's reconstruction, by zeros and by the mean activation, each summed over
        the predictions those positions make (a 1-layer model's MLP at position p only affects the
        prediction made at p), and KL(clean ‖ SAE). The model resumes at the site from the batch's
        cache (`GPT.forward_from`: what runs before the site runs once for all four), a few contexts
        at a time on a CPU (`CPU_LOGITS`)."""
        s, d, site = self.sums, self.drop_first, self.sae.write_site
        B, T = b.ctx.shape
        clean = b.cache[site]
        shape = (B, T - d, clean.shape[-1])
        replacements = {"ce_clean": None, "ce_sae": x_hat.reshape(shape), "ce_zero": clean.new_zeros(()).expand(shape),
                        "ce_mean": self.mean_act.expand(shape)}
        V = self.model.cfg.vocab_size
        step = B if clean.is_cuda else max(1, self.CPU_LOGITS // ((T - d - 1) * V))
        if self.scratch is None or self.scratch[0].shape[0] < step or self.scratch[0].shape[1:] != (T - d - 1, V):
            # the logits and the two log-softmaxes of a chunk, reused from chunk to chunk and batch to
            # batch: on a CPU a fresh 16 MB tensor is 4,000 page faults
            self.scratch = (torch.empty(step, T - d - 1, V, dtype=clean.dtype, device=clean.device),
                            *torch.empty(2, step, T - d - 1, V, device=clean.device))
        for i in range(0, B, step):
            rows = slice(i, i + step)
            cache = {k: v[rows] for k, v in b.cache.items()}
            tgt = b.ctx[rows, d + 1:, None]  # (b, T − d − 1, 1)
            out, *lp_out = (t[:len(tgt)] for t in self.scratch)
            lp = {}
            for key, r in replacements.items():
                a = clean[rows]
                if r is not None:
                    a = a.clone()
                    a[:, d:] = r[rows].to(a.dtype)
                logits = self.model.forward_from(site, a, cache, positions=slice(d, -1), out=out).float()  # (b, T − d − 1, V)
                if key in ("ce_clean", "ce_sae"):  # KL needs the log-probabilities
                    lp[key] = torch.log_softmax(logits, -1, out=lp_out[len(lp)])
                    s[key] -= lp[key].gather(-1, tgt).sum(dtype=torch.float64)
                else:  # the same loss, logsumexp − the target's logit, in the logits' own memory (torch.logsumexp's
                    # steps, without its (b, T − d − 1, V) temporary)
                    target, m = logits.gather(-1, tgt), logits.amax(-1, keepdim=True)
                    lse = logits.sub_(m).exp_().sum(-1, keepdim=True).log_().add_(m)
                    s[key] += (lse - target).sum(dtype=torch.float64)
            # Σ p_clean · (log p_clean − log p_sae), in place
            diff = torch.sub(lp["ce_clean"], lp["ce_sae"], out=lp["ce_sae"])
            s["kl"] += diff.mul_(lp["ce_clean"].exp_()).sum(dtype=torch.float64)
            self.n_pred += tgt.numel()

    @torch.no_grad()
    def add(self, b: HeldOutBatch) -> None:
        s, x, f, y = self.sums, b.x, b.f, b.y  # y: what the dictionary predicts (a transcoder's target, else x)
        if self.mean_act is None:
            self.mean_act = y.mean(0)
        x_hat = self.sae.predict(x, f, b.active).float()
        self._add_losses(b, x_hat)
        err, yd = (y - x_hat).double(), y.to(torch.float64, copy=True)  # a float32's square is exact in float64
        s["sq_err"] += err.mul_(err).sum()
        s["sq_x"] += yd.mul_(yd).sum()
        self.x_sum += y.sum(0, dtype=torch.float64)
        a = b.active
        s["l1"] += a.vals.abs().sum(dtype=torch.float64)
        self.n += len(x)
        self.fire += torch.bincount(a.cols[a.vals > 0], minlength=len(self.fire))
        self.max_act.scatter_reduce_(0, a.cols, a.vals.float(), "amax")  # (from 0, as the zeros would)
        if self.features is not None:
            self.features.add(f, b.labels, a)
            self.feature_peaks.add(f, b.labels, b.segments)
            u = b.units
            if self.neurons is not None:
                self.neurons.add(u, b.labels)
                self.neuron_peaks.add(u, b.labels, b.segments)
            k = first_half_rows(b)  # fit the probe on the first half of the windows, score it on the second
            self.probe.fit(u[:k], b.labels[:k])
            if k < len(u):
                self.probe.score(u[k:], b.labels[k:])

    def result(self) -> Evaluation:
        s = {k: v.item() for k, v in self.sums.items()}
        n, n_pred = self.n, self.n_pred
        if n == 0:
            raise ValueError("the evaluator saw no tokens: add() at least one batch")
        fire, x_sum = self.fire.cpu(), self.x_sum.cpu()
        centred = s["sq_x"] - x_sum.pow(2).sum().item() / n  # Σ‖x − mean‖²
        ce_clean, ce_sae = s["ce_clean"] / n_pred, s["ce_sae"] / n_pred
        ce_zero, ce_mean = s["ce_zero"] / n_pred, s["ce_mean"] / n_pred
        m = {"n_tokens": n, "mse": s["sq_err"] / n, "fvu": s["sq_err"] / centred,
             "explained_variance": 1 - s["sq_err"] / centred, "nmse": s["sq_err"] / s["sq_x"],
             "l0": fire.sum().item() / n, "l1": s["l1"] / n, **density_summary(fire, n),
             "ce_clean": ce_clean, "ce_sae": ce_sae,
             "ce_zero_ablation": ce_zero, "ce_mean_ablation": ce_mean,
             "ce_recovered_zero": ce_recovered(ce_clean, ce_sae, ce_zero),
             "ce_recovered_mean": ce_recovered(ce_clean, ce_sae, ce_mean),
             "ce_added_nats": ce_sae - ce_clean, "kl": s["kl"] / n_pred}
        probe = self.probe if self.probe is not None and self.probe.scores else None
        fd = Detectors.measure(self.features, self.feature_peaks) if self.features is not None else None
        nd = Detectors.measure(self.neurons, self.neuron_peaks) if self.neurons is not None else None
        hists = [h.cpu() if h is not None else None for h in (self.features, self.neurons)]
        return Evaluation(m, fire, self.max_act.cpu(), *hists, probe, fd, nd)


def evaluate_sae(model, sae, tokens: np.ndarray, labels: np.ndarray | None = None, n_concepts: int = 0,
                 n_tokens: int = 200_000, batch_contexts: int = 32, drop_first: int = 1,
                 mean_act: Tensor | None = None, neurons: bool = True, log: bool = True) -> Evaluation:
    """Stream `n_tokens` tokens of held-out text (consecutive n_ctx windows) through the model and
    the SAE (at `sae.cfg.site`); return reconstruction, sparsity, CE and, with labels, concept
    metrics. One `Evaluator` over `held_out_batches`."""
    ev = Evaluator(model, sae, n_concepts if labels is not None else 0, mean_act, neurons, drop_first)
    with torch.no_grad():
        for b in held_out_batches(model, sae, tokens, labels, n_tokens, batch_contexts, drop_first,
                                  log="evaluate" if log else ""):
            ev.add(b)
    return ev.result()

