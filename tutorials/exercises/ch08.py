"""Chapter 8's exercise: steer with the purest Golden Gate feature instead of the chosen one."""

from __future__ import annotations

from exercises import open_exercise, verdict
from sae.interpret import features_for_concept, logit_effects


def check(purest_result: dict | None, detector_result: dict, stats, model, sae, tok) -> bool | None:
    """`purest_result`: {"feature", "sweep"} with `topic_sweep`'s rows for the purest Golden Gate
    feature at the multiples of `detector_result` (the chapter's `golden_gate_demo`). Prints both
    sweeps side by side and what each promotes."""
    if open_exercise(purest_result, "08_steering"):
        return None
    purest = features_for_concept(stats, "golden_gate", k=1)[0][0]
    want = [r["multiple"] for r in detector_result["sweep"]]
    got = [r["multiple"] for r in purest_result.get("sweep", [])]
    print(f"{'clamp':>6} | chosen {detector_result['feature']:<5} on topic, steered, CE | purest "
          f"{purest_result.get('feature')!s:<5} on topic, steered, CE")
    for a, b in zip(detector_result["sweep"], purest_result.get("sweep", [])):
        print(f"{a['multiple']:>5}x | {a['rate']:>14.0%} {a['fluent_rate']:>8.0%} {a['ce']:5.2f} | "
              f"{b['rate']:>12.0%} {b['fluent_rate']:>8.0%} {b['ce']:5.2f}")
    for name, f in (("chosen", detector_result["feature"]), ("purest", purest)):
        promoted = ", ".join(repr(tok.token_str(t)) for t, _ in logit_effects(model, sae, f, k=5).promoted)
        print(f"{name} feature {f} promotes {promoted}")
    if purest_result.get("feature") != purest:
        return verdict(False, f"you clamped feature {purest_result['feature']}; the purest Golden Gate feature is {purest}")
    return verdict(got == want, "the purest feature's sweep, beside the detector's" if got == want else
                   f"use the same multiples as the chapter's sweep ({want}), got {got}")
