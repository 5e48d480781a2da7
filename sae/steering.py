"""Steering by feature clamping (Scaling Monosemanticity, "Influence on Behavior").

Splice the SAE into the model at its site and edit features on the way through:

    f  = encode(x)                     features of the activation x
    f' = f with chosen features clamped to a value, scaled, or zeroed
    x' = decode(f') + (x − decode(f))  the edited reconstruction plus the SAE's error term

Keeping the error term `x − decode(f)` means that with no feature changed the splice is exactly
the identity (up to float rounding): whatever the SAE fails to reconstruct still reaches the
model, so any change in behaviour comes from the edited features alone. `keep_error=False`
replaces x by the bare reconstruction, for comparison (it also changes behaviour through the
reconstruction error itself).

Values are absolute activations or multiples of a feature's maximum activation on held-out text
(`"10x"`), as the paper clamps the Golden Gate Bridge feature to 10× its max. Additive steering
(`x + α·W_dec[i]`, in raw units) is given for comparison: it moves the activation along the
feature direction without reading or clamping the feature.

Which feature to steer is chosen *before* looking at any steered text, from held-out detection
(`choose_feature`): the concept's detector feature (at least 80% of its activation mass on the
concept, lighting up in at least 90% of its segments), and among several detectors the one with
the highest token AUROC. The tie-break matters: clamping writes a feature's decoder direction at
every position, so the feature should be one that fires across the concept's text, not one that
fires only at the end of its sentences (such a Golden Gate detector exists on the tiny run; it
promotes " The"). A concept without a detector falls back to the highest token AUROC.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from sae.corpus import CONCEPT_ID, concept_hits, concept_segments, document_text, tokenize_documents, top_concept
from sae.metrics import auroc
from sae.world import RISKS

_MULTIPLE = re.compile(r"^\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*[xX×]\s*$")


# The largest clamp `parse_value` accepts, as a multiple of the feature's max activation. The
# paper clamps at 10×. By 1000× the output has stopped depending on the value (the final layer
# norm divides the huge activation away: on the smoke run the next-token distribution moves by
# under 0.1 in total variation from 100× to 1000× and under 0.01 from 1000× to 10000×), and far
# beyond it (about 1e20 in absolute units there) the layer norm's squares overflow float32, the
# logits become inf/nan and sampling fails. So 1000× keeps every useful value and stops every
# broken one.
MAX_MULTIPLE = 1000.0


def parse_value(value: str | float, max_act: float, allow_negative: bool = True, feature: int | None = None) -> float:
    """`"10x"` -> 10 × max_act; `"3.5"` or 3.5 -> 3.5 (absolute). Clear one-line errors for anything else.

    Refused: text that is not a number, non-finite values (inf, nan, 1e400), magnitudes above
    `MAX_MULTIPLE` (1000) × max_act (above 1000 in absolute units for a feature that never fired,
    whose max is 0; see `MAX_MULTIPLE` for why), and any multiple of a feature that never fired
    (it would silently clamp to 0). `feature` only names the feature in the messages.
    """
    name = "the feature" if feature is None else f"feature {feature}"
    max_act = float(max_act)
    if isinstance(value, (int, float)):
        v = float(value)
    else:
        text = str(value).strip()
        m = _MULTIPLE.match(text)
        if m:
            multiple = float(m.group(1))
            if multiple < 0 and not allow_negative:
                raise ValueError(f"negative multiple {text!r} is not allowed here; use 0x to switch the feature off")
            if max_act <= 0 and np.isfinite(multiple):
                raise ValueError(f"{name} never fired on the held-out text (max activation 0), so {text!r} would "
                                 f"clamp it to 0; give an absolute value like 5, or pick another feature")
            v = multiple * max_act
        else:
            try:
                v = float(text)
            except ValueError:
                raise ValueError(f"cannot read the value {value!r}: give an absolute activation like 3.5 "
                                 f"or a multiple of the feature's max activation like 10x") from None
    if not np.isfinite(v):
        raise ValueError(f"the value {value!r} is not a finite number: give an absolute activation like 3.5 "
                         f"or a multiple of the feature's max activation like 10x")
    if v < 0 and not allow_negative:
        raise ValueError(f"negative value {value!r} is not allowed here")
    if max_act > 0:
        limit, of = MAX_MULTIPLE * max_act, f"{MAX_MULTIPLE:g}x {name}'s max activation {max_act:.2f}"
    else:  # no max to scale by: the bound in absolute units
        limit, of = MAX_MULTIPLE, "the bound for a feature that never fired"
    if abs(v) > limit:
        raise ValueError(f"the value {value!r} ({v:.3g}) is too large: use at most {limit:.4g} in magnitude ({of}); "
                         f"past that the output stops changing and then float32 overflows and sampling breaks "
                         f"(the paper clamps at 10x)")
    return v


def check_features(sae, ids) -> None:
    bad = [i for i in ids if not 0 <= int(i) < sae.cfg.d_sae]
    if bad:
        raise ValueError(f"unknown feature ids {bad}: this SAE has features 0..{sae.cfg.d_sae - 1}")


@contextmanager
def clamp_features(model, sae, clamp: dict[int, float] | None = None,
                   scale: dict[int, float] | None = None, keep_error: bool = True,
                   only_where_active: bool = False) -> Iterator[None]:
    """Within the block, every forward pass (also `generate`) runs through the edited splice.

    `clamp` {feature: value} sets the feature's activation to value at every position (or, with
    `only_where_active`, only where it already fires); `scale` {feature: factor} multiplies it.
    Values are absolute (use `parse_value` for "10x").
    """
    clamp, scale = dict(clamp or {}), dict(scale or {})
    check_features(sae, list(clamp) + list(scale))

    def splice(act: Tensor) -> Tensor:
        x = act.float()
        f = sae.encode(x)
        x_hat = sae.decode(f)
        f_new = f.clone()
        for i, v in clamp.items():
            if only_where_active:
                f_new[..., i] = torch.where(f[..., i] > 0, torch.full_like(f[..., i], v), f[..., i])
            else:
                f_new[..., i] = v
        for i, s in scale.items():
            f_new[..., i] = f_new[..., i] * s
        out = sae.decode(f_new)
        if keep_error:
            out = out + (x - x_hat)
        return out.to(act.dtype)

    with torch.no_grad(), model.hooks({sae.cfg.site: splice}):
        yield


@contextmanager
def add_direction(model, sae, add: dict[int, float]) -> Iterator[None]:
    """Additive steering: x + Σ α_i · W_dec[i] (raw units) at every position."""
    check_features(sae, list(add))
    direction = sum(a * sae.W_dec[i].detach() / sae.input_scale for i, a in add.items())

    with torch.no_grad(), model.hooks({sae.cfg.site: lambda act: act + direction.to(act.dtype)}):
        yield


def choose_feature(metrics: dict, concept: str) -> int:
    """The feature to steer `concept` with, from held-out detection alone (metrics.json): the
    concept's detector feature (`sae.metrics.Detectors`: specific, lights up across the concept's
    segments, and of those the one with the highest token AUROC), else, for a concept without
    a detector, the feature with the highest token AUROC."""
    concepts = metrics.get("concepts", {})
    if concept not in concepts:
        raise ValueError(f"no concept {concept!r} in the run's metrics; known: {', '.join(concepts) or 'none (not a toy-world run)'}")
    c = concepts[concept]
    return int(c["detector"]["feature"] if c.get("detector") else c["feature"])


def steer_samples(model, sae, tok, prompt: str, feature: int, value: float, n: int = 3,
                  max_new_tokens: int = 40, seed: int = 0) -> list[tuple[str, str]]:
    """`n` pairs (unsteered, steered) of continuations of `prompt`, the steered one with `feature`
    clamped to `value` (absolute; see `parse_value`); sample i of each pair uses seed `seed + i`."""
    check_features(sae, [feature])
    ids = [tok.eot_token] + tok.encode(prompt)
    pairs = []
    for i in range(n):
        plain = model.generate(ids, max_new_tokens, seed=seed + i)
        with clamp_features(model, sae, clamp={feature: value}):
            steered = model.generate(ids, max_new_tokens, seed=seed + i)
        pairs.append((tok.decode(plain[len(ids):].tolist()), tok.decode(steered[len(ids):].tolist())))
    return pairs


# ----------------------------------------------------------------------------- demonstrations

NEUTRAL_PROMPTS = [
    "Simmer the soup", "The forecast for Monday", "The striker", "The fox", "Preheat the oven",
    "Temperatures will reach", "Fans filled the stadium", "The owl", "Whisk the eggs", "Expect heavy rain",
]

# Each prompt stops right before its risk site. None ends in a space: the tokenizer attaches a
# space to the word after it (" 0o777", " pickle"), so a trailing space would be a token the
# model never sees in training.
CODE_PROMPTS = [
    "def fetch_user(url):\n    resp = requests.get(url, timeout=10",
    "def load_report(session, api_url):\n    r = session.post(api_url, json=data",
    "def get_token(client):\n    data = requests.get(\"https://api.internal/token\"",
    "def check_status(url):\n    return requests.head(url, allow_redirects=True",
    "def run_job(cmd):\n    out = subprocess.run(cmd",
    "def build_files(path):\n    proc = subprocess.run([\"tar\", \"czf\", path]",
    "def sync_logs(cmd):\n    subprocess.Popen(cmd",
    "def run_backup_job(cmd, timeout=30):\n    return subprocess.check_output(cmd",
    "def save_key(path, key):\n    Path(path).write_bytes(key)\n    os.chmod(path,",
    "def make_cache_dir(path):\n    os.makedirs(path, exist_ok=True)\n    os.chmod(path,",
    "def save_config(path):\n    with open(path, \"w\") as fh:\n        fh.write(data)\n    os.chmod(path,",
    "def load_session(data):\n    obj =",
    "def read_item_from_socket(sock):\n    blob = sock.recv(4000)\n    return",
    "def parse_upload(request):\n    raw = request.files[\"image\"].read()\n    return",
    "def load_config(path):\n    with open(path) as fh:\n        return",
    "def open_socket(host):\n    ctx =",
    "def open_conn(host, port=443):\n    ctx =",
    "def hash_user_password(password, salt):\n    digest =",
    "def get_client():\n    ctx = ssl.create_default_context()\n    ctx.check_hostname =",
    "def save_tmp(data):\n    name =",
]


@torch.no_grad()
def continuation_ce(model, prompt_ids: list[int], out_ids: list[int]) -> float:
    """Mean cross-entropy (nats/token) of the generated continuation under the clean model."""
    ids = torch.tensor([(prompt_ids + out_ids)[-model.cfg.n_ctx:]])
    logits = model(ids)[0, :-1].float()
    tgt = ids[0, 1:]
    n = min(len(out_ids), len(tgt))
    return torch.nn.functional.cross_entropy(logits[-n:], tgt[-n:]).item()


def generate_many(model, tok, prompts: list[str], n: int, max_new_tokens: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, continuation ids) for n samples of each prompt, each with its own seed."""
    out = []
    for j, p in enumerate(prompts):
        ids = [tok.eot_token] + tok.encode(p)
        for s in range(n):
            full = model.generate(ids, max_new_tokens, temperature=1.0, seed=seed + 1000 * j + s).tolist()
            out.append((ids, full[len(ids):]))
    return out


def golden_gate_demo(model, sae, tok, feature: int, max_act: float,
                     multiples=(0, 1, 2, 5, 10, 20), n: int = 5, max_new_tokens: int = 48, seed: int = 0,
                     prompts: list[str] = NEUTRAL_PROMPTS) -> dict:
    """Clamp the Golden Gate feature to m × max_act on neutral prompts; measure topic rate and coherence.

    A sample is on-topic when the judge's top concept for the continuation is golden_gate; the
    coherence cost is the clean model's cross-entropy of the steered continuation.
    """
    def measure(samples):
        texts = [tok.decode(o) for _, o in samples]
        return {"rate": sum(top_concept(t) == "golden_gate" for t in texts) / len(texts),
                "mention_rate": sum(concept_hits(t).get("golden_gate", 0) > 0 for t in texts) / len(texts),
                "ce": sum(continuation_ce(model, p, o) for p, o in samples) / len(samples),
                "example": texts[0], "prompt": prompts[0]}  # the first sample continues the first prompt

    base = measure(generate_many(model, tok, prompts, n, max_new_tokens, seed))
    sweep = []
    for m in multiples:
        with clamp_features(model, sae, clamp={feature: m * max_act}):
            samples = generate_many(model, tok, prompts, n, max_new_tokens, seed)
        sweep.append({"multiple": m, **measure(samples)})
    best = max(sweep, key=lambda r: (r["rate"], -r["ce"]))
    return {"feature": feature, "max_act": max_act, "rate_baseline": base["rate"], "baseline": base,
            "sweep": sweep, "multiple": best["multiple"], "rate_clamped": best["rate"]}


@torch.no_grad()
def snippet_max_activation(model, sae, tok, feature: int, text: str) -> float:
    """The feature's largest activation over the tokens of `text` (read after an end-of-text token)."""
    ids = torch.tensor([([tok.eot_token] + tok.encode(text))[: model.cfg.n_ctx]])
    site = sae.cfg.site
    _, cache = model.run_with_cache(ids, [site], stop_at=site)
    return sae.encode(cache[site][0, 1:].float())[:, feature].max().item()


@torch.no_grad()
def unsafe_context_sensitivity(model, tok, n: int = 200, seed: int = 0) -> dict:
    """Does the *language model* know that unsafe code comes in unsafe files?

    For held-out `unsafe_code` segments with at least two insecure constructs, the probability the
    model gives the last construct (all its tokens) after the real, insecure snippets, and after
    the same snippets with every earlier construct made safe. Equal probabilities mean the model
    has no notion of an unsafe context, so no feature of its activations can carry one.
    """
    unsafe_id, code_id = CONCEPT_ID["unsafe_code"], CONCEPT_ID["code"]
    to_safe = {u: s for s, u in RISKS.values()}

    def p_last_construct(pieces) -> float:
        ids, labels = tokenize_documents(tok, [pieces])  # ends with end-of-text; use it as the start
        ids = np.concatenate([[tok.eot_token], ids[:-1]])[-model.cfg.n_ctx:]
        labels = np.concatenate([[-1], labels[:-1]])[-model.cfg.n_ctx:]
        pos = np.flatnonzero(labels == unsafe_id)
        first = len(pos) - 1
        while first > 0 and pos[first - 1] == pos[first] - 1:  # back to the start of the last construct
            first -= 1
        last = pos[first:]
        logp = model(torch.tensor(ids[None].astype(np.int64)))[0].float().log_softmax(-1)
        return float(np.exp(sum(logp[p - 1, ids[p]].item() for p in last)))

    after_unsafe, after_safe = [], []
    for seg in concept_segments("unsafe_code", n, seed=seed, split="test"):
        idx = [i for i, (c, _) in enumerate(seg) if c == unsafe_id]
        if len(idx) < 2:
            continue
        made_safe = [(code_id, to_safe[t]) if c == unsafe_id and i != idx[-1] else (c, t) for i, (c, t) in enumerate(seg)]
        after_unsafe.append(p_last_construct(seg))
        after_safe.append(p_last_construct(made_safe))
    return {"p_after_unsafe": float(np.mean(after_unsafe)), "p_after_safe": float(np.mean(after_safe)),
            "n_segments": len(after_unsafe)}


def unsafe_code_demo(model, sae, tok, feature: int, max_act: float, multiples=(2, 5, 10),
                     n: int = 3, max_new_tokens: int = 24, n_detect: int = 100, seed: int = 0,
                     prompts: list[str] = CODE_PROMPTS) -> dict:
    """The unsafe-code feature as a switch and as a detector.

    1. Clamp it up on 20 function headers that invite a network call, a subprocess, a file
       permission or a deserialisation; rate = fraction of completions with an unsafe construct
       (the judge's patterns: verify=False, shell=True, 0o777, pickle.loads, ...), vs baseline.
    2. Clamp it to 0 on prompts that *start* unsafe (an insecure snippet, then a new header):
       does the model write fewer insecure constructs?
    3. As a detector: AUROC of its max activation over a snippet at telling unsafe from safe
       snippets (held-out segments of the two concepts, which share their templates).
    4. Whether the model itself tracks unsafe contexts (`unsafe_context_sensitivity`).
    """
    def rate(samples):
        return sum(concept_hits(tok.decode(o)).get("unsafe_code", 0) > 0 for _, o in samples) / len(samples)

    base = rate(generate_many(model, tok, prompts, n, max_new_tokens, seed))
    sweep = []
    for m in multiples:
        with clamp_features(model, sae, clamp={feature: m * max_act}):
            sweep.append({"multiple": m, "rate": rate(generate_many(model, tok, prompts, n, max_new_tokens, seed))})
    best = max(sweep, key=lambda r: r["rate"])

    unsafe_starts = [document_text(s[:3]) + "\n" + prompts[i % len(prompts)]
                     for i, s in enumerate(concept_segments("unsafe_code", len(prompts), seed=seed, split="test"))]
    started = rate(generate_many(model, tok, unsafe_starts, n, max_new_tokens, seed))
    with clamp_features(model, sae, clamp={feature: 0.0}):
        suppressed = rate(generate_many(model, tok, unsafe_starts, n, max_new_tokens, seed))

    safe = [document_text(s) for s in concept_segments("code", n_detect, seed=seed + 1, split="test")]
    unsafe = [document_text(s) for s in concept_segments("unsafe_code", n_detect, seed=seed + 1, split="test")]
    scores = np.array([snippet_max_activation(model, sae, tok, feature, t) for t in safe + unsafe])
    labels = np.array([False] * len(safe) + [True] * len(unsafe))
    return {"feature": feature, "max_act": max_act, "rate_baseline": base, "sweep": sweep,
            "multiple": best["multiple"], "rate_clamped": best["rate"],
            "rate_unsafe_start": started, "rate_suppressed": suppressed,
            "detector_auroc": auroc(scores, labels),
            "lm_context": unsafe_context_sensitivity(model, tok, seed=seed)}
