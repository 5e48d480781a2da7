"""Chapter 8's exercises: write the clamp with its error term; steer with the purest Golden Gate
feature instead of the chosen one."""

from __future__ import annotations

import torch

from exercises import MathsExercise, open_exercise, same, verdict
from sae.steering import topic_sweep
from sae.interpret import features_for_concept, logit_effects


# ----------------------------------------------------------------------------- write the maths
def _encode(x, W_enc, b_enc, b_dec):
    return torch.relu((x - b_dec) @ W_enc + b_enc)


def _splice(x, W_enc, b_enc, W_dec, b_dec, feature, value):
    f = _encode(x, W_enc, b_enc, b_dec)
    f_new = f.clone()
    f_new[:, feature] = value
    return (f_new @ W_dec + b_dec) + (x - (f @ W_dec + b_dec))


def _no_error_term(x, W_enc, b_enc, W_dec, b_dec, feature, value):
    f = _encode(x, W_enc, b_enc, b_dec)
    f[:, feature] = value
    return f @ W_dec + b_dec


def _added(x, W_enc, b_enc, W_dec, b_dec, feature, value):
    return x + value * W_dec[feature]


def _wrong_sign(x, W_enc, b_enc, W_dec, b_dec, feature, value):
    f = _encode(x, W_enc, b_enc, b_dec)
    f_new = f.clone()
    f_new[:, feature] = value
    return (f_new @ W_dec + b_dec) - (x - (f @ W_dec + b_dec))


def _only_where_active(x, W_enc, b_enc, W_dec, b_dec, feature, value):
    f = _encode(x, W_enc, b_enc, b_dec)
    f_new = f.clone()
    f_new[:, feature] = torch.where(f[:, feature] > 0, value, f[:, feature])
    return (f_new @ W_dec + b_dec) + (x - (f @ W_dec + b_dec))


def _no_pre_encoder_bias(x, W_enc, b_enc, W_dec, b_dec, feature, value):
    f = torch.relu(x @ W_enc + b_enc)
    f_new = f.clone()
    f_new[:, feature] = value
    return (f_new @ W_dec + b_dec) + (x - (f @ W_dec + b_dec))


def _cases():
    g = torch.Generator().manual_seed(8)
    out = []
    for batch, d_in, d_sae, feature in ((6, 5, 9, 2), (10, 4, 7, 6)):
        x = torch.randn(batch, d_in, generator=g)
        W_enc = torch.randn(d_in, d_sae, generator=g)
        out.append(dict(x=x, W_enc=W_enc, b_enc=torch.randn(d_sae, generator=g) * 0.5,
                        W_dec=torch.randn(d_sae, d_in, generator=g), b_dec=torch.randn(d_in, generator=g) * 0.5,
                        feature=feature, value=3.0))
    return out


CLAMP = MathsExercise(
    "08_steering", "clamp_splice", _splice, _cases, mistakes={
        "the error term is missing: decode(f') alone runs the model on the SAE's reconstruction, which "
        "changes its predictions before any edit; add back x − decode(f)": _no_error_term,
        "the value is added along the feature's direction (x + value · W_dec[i]): a clamp *sets* f_i to "
        "the value, so the change is (value − f_i) · W_dec[i]": _added,
        "the error term has the wrong sign: x' = decode(f') + (x − decode(f))": _wrong_sign,
        "the feature is set only where it already fires (> 0): clamp it at every position": _only_where_active,
        "the encoder must subtract b_dec before W_enc: f = ReLU((x − b_dec) @ W_enc + b_enc)": _no_pre_encoder_bias,
    })


# ------------------------------------------------------------------------- vary the experiment
def check(purest_result: dict | None, detector_result: dict, stats, model, sae, tok) -> bool | None:
    """`purest_result`: {"feature", "sweep"} with `topic_sweep`'s rows for the purest Golden Gate
    feature at the multiples of `detector_result` (the chapter's `golden_gate_demo`), on its test
    prompts with its number of samples. Recomputes the first row (sampling is seeded, so the same
    call gives the same row), prints both sweeps side by side and what each feature promotes."""
    if open_exercise(purest_result, "08_steering"):
        return None
    purest = features_for_concept(stats, "golden_gate", k=1)[0][0]
    if purest_result.get("feature") != purest:
        return verdict(False, f"you clamped feature {purest_result.get('feature')}; the purest Golden Gate feature "
                              f"(largest share of its activation mass on Golden Gate text) is {purest}")
    want = [r["multiple"] for r in detector_result["sweep"]]
    rows = purest_result.get("sweep") or []
    got = [r.get("multiple") for r in rows]
    if got != want:
        return verdict(False, f"use the same multiples as the chapter's sweep ({want}), got {got}")
    print(f"{'clamp':>6} | chosen {detector_result['feature']:<5} on topic, steered, CE | purest "
          f"{purest:<5} on topic, steered, CE")
    for a, b in zip(detector_result["sweep"], rows):
        print(f"{a['multiple']:>5}x | {a['rate']:>14.0%} {a['fluent_rate']:>8.0%} {a['ce']:5.2f} | "
              f"{b['rate']:>12.0%} {b['fluent_rate']:>8.0%} {b['ce']:5.2f}")
    for name, f in (("chosen", detector_result["feature"]), ("purest", purest)):
        promoted = ", ".join(repr(tok.token_str(t)) for t, _ in logit_effects(model, sae, f, k=5).promoted)
        print(f"{name} feature {f} promotes {promoted}")
    max_act = float(stats.max_act[purest])
    _, (row,) = topic_sweep(model, sae, tok, purest, max_act, detector_result["prompts"], multiples=want[:1],
                            n=detector_result["n"], baseline=False)
    keys = ("rate", "fluent_rate", "ce")
    if not same([rows[0].get(k) for k in keys], [row[k] for k in keys], rtol=1e-3):
        return verdict(False, f"the sweep's first row is not what `topic_sweep` gives for feature {purest} clamped "
                              f"to {want[0]} × its own max activation ({max_act:.3g}) on the chapter's test prompts "
                              f"(`gg['prompts']`) with n={detector_result['n']}: check the max activation "
                              "(`max_acts[feature]`, not the chosen feature's), the prompts and n")
    return verdict(True, "the purest feature's sweep, beside the chosen one's")
