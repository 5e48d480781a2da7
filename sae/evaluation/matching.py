"""How much of a known dictionary an SAE recovered, one latent per true feature (SynthSAEBench's
measures, Chanin & Garriga-Alonso 2026, arXiv 2602.14687).

MMCS (`sae.world.toy.mmcs`) lets one latent count for many true features. Here each true feature
i gets its own latent m(i), the assignment that maximises the total cosine (the Hungarian method,
`assign`), and on held-out rows with true coefficients c and latent activations f:

    MCC          mean_i cos(D_i, W_dec[m(i)])                     one-to-one mean cosine
    uniqueness   #{argmax_i cos(D_i, W_dec[j]) : j alive} / #alive  (1: no two latents share a best
                 true feature; duplicates pull it down)
    precision_i  P(c_i > 0 | f_m(i) > 0)      recall_i  P(f_m(i) > 0 | c_i > 0)   (means over i)
    thirds       MCC over the common, middle and rare thirds of the true features (by p_i)

On the hierarchical task (`SyntheticConfig.n_parents`), absorption is exact. For child k of
parent q, over the rows where k fires (so q does too):

    absorbed_k   P(f_m(q) = 0 and f_m(k) > 0 | c_k > 0)   the child's latent took the parent's rows
    parent_cos_k cos(D_q, W_dec[m(k)])                    ... and the parent's direction with them

(after Chanin et al. 2024, "A is for Absorption", with the truth in place of probes).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def assign(cost: np.ndarray) -> np.ndarray:
    """The assignment of rows to distinct columns with the least total cost (n rows <= m columns):
    col[i] for each row i. The Hungarian method with potentials (Kuhn 1955; the O(n²m) shortest
    augmenting path form of Jonker & Volgenant): row i joins by a shortest path of reduced costs
    cost[r, j] - u[r] - v[j] >= 0 from a free column, the potentials keep every reduced cost
    non-negative. The inner loop is one numpy pass over the columns."""
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    if n > m:
        raise ValueError(f"assign needs no more rows than columns, got {n} x {m}: pass the transpose")
    u, v = np.zeros(n + 1), np.zeros(m + 1)  # potentials; index 0 is the virtual start column's
    owner = np.zeros(m + 1, dtype=np.int64)  # owner[j]: the row (1-based) holding column j, 0 if none
    way = np.zeros(m + 1, dtype=np.int64)  # the previous column on the shortest path to j
    for i in range(1, n + 1):
        owner[0], j0 = i, 0
        dist = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while owner[j0]:  # grow the tree until it reaches a free column
            used[j0] = True
            r = owner[j0]
            reduced = cost[r - 1] - u[r] - v[1:]
            free = ~used[1:]
            closer = free & (reduced < dist[1:])
            dist[1:][closer], way[1:][closer] = reduced[closer], j0
            masked = np.where(free, dist[1:], np.inf)
            j1 = int(masked.argmin()) + 1
            delta = masked[j1 - 1]
            tree = used.nonzero()[0]
            u[owner[tree]] += delta
            v[tree] -= delta
            dist[1:][free] -= delta
            j0 = j1
        while j0:  # augment along the path back to the start
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    col = np.empty(n, dtype=np.int64)
    held = owner[1:].nonzero()[0]
    col[owner[1:][held] - 1] = held
    return col


def cosines(decoder: Tensor, dictionary: Tensor) -> np.ndarray:
    """(n, d_sae) cos(D_i, W_dec[j]) on the CPU, whatever device the decoder is on."""
    if decoder.shape[-1] != dictionary.shape[-1]:
        raise ValueError(f"decoder rows have width {decoder.shape[-1]} but true features {dictionary.shape[-1]}: "
                         "pass W_dec (d_sae, d_in), not W_enc (d_in, d_sae)")
    D = F.normalize(decoder.detach().float().cpu(), dim=1)
    return (F.normalize(dictionary.detach().float().cpu(), dim=1) @ D.T).numpy()


def one_to_one(cos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m, cos_m): the latent m(i) matched to each true feature i (rows of `cos`, from `cosines`) and
    their cosine, maximising Σ_i cos(D_i, W_dec[m(i)]) over one-to-one assignments."""
    if cos.shape[0] > cos.shape[1]:
        raise ValueError(f"one-to-one matching needs at least as many latents ({cos.shape[1]}) as true "
                         f"features ({cos.shape[0]}): widen the SAE (sae.d_sae)")
    m = assign(-cos)
    return m, cos[np.arange(len(m)), m]


@torch.no_grad()
def recovery(decoder: Tensor, dictionary: Tensor, f: Tensor, coeffs: Tensor, probs: Tensor,
             parents: Tensor | None = None) -> dict:
    """The module docstring's measures: `decoder` W_dec (d_sae, d), `dictionary` the truth (n, d),
    `f` the latents on held-out rows (rows, d_sae), `coeffs` the rows' true coefficients (rows, n),
    `probs` (n,) the firing probabilities, `parents` (n,) each child's parent (-1: none)."""
    cos_all = cosines(decoder, dictionary)
    m, cos = one_to_one(cos_all)
    on = (f[:, torch.from_numpy(m).to(f.device)] > 0).cpu()  # (rows, n): the matched latents fire
    true = coeffs.cpu() > 0
    both = (on & true).sum(0).double()
    precision = (both / on.sum(0).clamp_min(1)).mean().item()  # a latent that never fires: 0
    recall = (both / true.sum(0).clamp_min(1)).mean().item()
    alive = (f > 0).any(0).cpu().numpy()
    best = cos_all[:, alive].argmax(0)  # each live latent's best true feature
    order = probs.cpu().argsort(descending=True).numpy()
    out = {"mcc": float(cos.mean()), "uniqueness": len(np.unique(best)) / max(int(alive.sum()), 1),
           "precision": precision, "recall": recall,
           "mcc_thirds": [float(cos[part].mean()) if len(part) else float("nan") for part in np.array_split(order, 3)]}
    if parents is not None and bool((parents >= 0).any()):
        kids = (parents >= 0).nonzero().squeeze(1)
        par = parents[kids]
        rows = true[:, kids]  # (rows, n_kids): the child fires (its parent with it)
        took = ~on[:, par] & on[:, kids] & rows
        out["absorbed"] = (took.sum(0) / rows.sum(0).clamp_min(1)).mean().item()
        out["parent_cos"] = float(cos_all[par.numpy(), m[kids.numpy()]].mean())  # cos(D_q, W_dec[m(k)])
    return out
