"""The run report (`sae.run.report`) from hand-made run directories: what it leads with, what it hides
on real text, degenerate-run warnings, captions, and that names from files never become markup."""

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from sae.run._html import markdown_to_html, safe_link_target
from sae.markdown import clip as _clip
from sae.run.report import report_markdown, write_report
from sae.run.config import check_config, get_preset, with_overrides

SAE_METRICS = {"site": "blocks.0.mlp.hook_post", "arch": "relu", "d_sae": 1024, "n_tokens": 198374,
               "l0": 17.377, "fvu": 0.2268, "nmse": 0.2235, "ce_recovered_zero": 0.9715,
               "ce_recovered_mean": 0.9835, "ce_added_nats": 0.1107, "kl": 0.1132, "dead_fraction": 0.0,
               "ultralow_fraction": 0.0, "dense_fraction": 0.0, "mse": 0.1, "explained_variance": 0.7732, "l1": 20.0,
               "ce_clean": 1.16, "ce_sae": 1.27, "ce_zero_ablation": 5.0, "ce_mean_ablation": 7.9, "kl": 0.1132}
EXAMPLE = (" over 300 degrees Celsius. Commuters walk across the bridge from San Francisco to Marin County to "
           "Marin County. Sailors walk across the Golden Gate Bridge")
BROKEN = " over a g Bern the photoelectric the the the the a threw a th the the the"


def _row(multiple, fluent, rate, ce, example, steered, prompt="The fox"):
    return {"multiple": multiple, "fluent_rate": fluent, "rate": rate, "ce": ce, "example": example,
            "example_ce": ce, "example_steered": steered, "prompt": prompt}


GG_SUMMARY = {"feature": 162, "multiple": 1, "fluent_rate": 0.62, "rate": 0.66, "ce": 1.06, "fluent_baseline": 0.0,
              "rate_baseline": 0.02, "ce_baseline": 0.83, "fluent_ce": 2.0, "rule": "the best on validation prompts"}
STEERING = {"golden_gate": {
    "feature": 162, "max_act": 9.5, "prompts": ["The fox"],
    "baseline": _row(None, 0.0, 0.02, 0.83, " over 300 degrees.", False),
    "sweep": [_row(1, 0.62, 0.66, 1.06, EXAMPLE, True), _row(2, 0.04, 0.7, 10.7, BROKEN, False)],
    "choice": {"feature": 162, "multiple": 1, "rule": "the best on validation prompts",
               "validation_prompts": ["Knead the dough", "The coach praised"],
               "candidates": [{"feature": 957, "multiple": 0.5, "fluent_rate": 0.1, "rate": 0.2, "ce": 4.2,
                               "promotes": [" The", " A"]},
                              {"feature": 162, "multiple": 1, "fluent_rate": 0.6, "rate": 0.7, "ce": 1.1,
                               "promotes": [" bridge", " fog"]}]},
    "summary": GG_SUMMARY}}
# The smallest valid PNG (1×1), standing in for the pipeline's figures.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a4bd0000000049454e44ae426082")


def make_run(path: Path, corpus: str = "toy", metrics: dict | None = None, steering: dict | None = None,
             figures=("training_curves", "log_density"), name: str = "smoke") -> Path:
    """A run directory with the files the report reads, written by hand (no training)."""
    path.mkdir(parents=True)
    check_config(replace(with_overrides(get_preset("smoke"), [f"corpus={corpus}"]), name=name), path)
    lm = {"val_loss": 1.16, "seconds": 3.0}
    if corpus == "toy":
        lm.update(on_concept_rate=0.82, val_loss_by_concept={"golden_gate": 0.55})
    (path / "stages.json").write_text(json.dumps({"lm": lm, "sae": {"seconds": 2.0}}))
    m = {"version": 2, "sae": {**SAE_METRICS, "warnings": (metrics or {}).get("warnings", [])}}
    (path / "metrics.json").write_text(json.dumps(m))
    if steering is not None:  # the fields a test leaves out, filled in
        full = {"version": 2, **{k: v for k, v in steering.items() if not isinstance(v, dict)}}
        for name, r in steering.items():
            if isinstance(r, dict):
                extra = {"n": 5, "prompts": ["The fox"]} if name == "golden_gate" else {
                    "prompt_only": True, "decision_auroc": 0.8, "multiple": r["summary"]["multiple"], "started": {},
                    "suppressed": {}, "detector_auroc": 0.9}
                full[name] = {"concept": name, **extra, **r}
        (path / "steering.json").write_text(json.dumps(full))
    (path / "figures").mkdir()
    for f in figures:
        (path / "figures" / f"{f}.png").write_bytes(PNG)
    return path


def sections(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("## ")]


def test_the_report_leads_with_a_summary_of_results_beside_the_papers(tmp_path):
    run = make_run(tmp_path / "run", steering=STEERING)
    md = report_markdown(run)
    heads = sections(md)
    assert heads[0] == "## Summary" and heads[-2:] == ["## Configuration", "## Wall time per stage"]
    summary = md[md.index("## Summary"):md.index(heads[1])]
    for text in ["17.4", "20.1 (April update", "0.224", "0.131", "0.972", "0.914", "| 0.0% |", "4.1%", "| 62% |"]:
        assert text in summary, f"the summary lacks {text!r}"
    assert "[training curves](figures/training_curves.png)" in summary
    gg = md[md.index("## Steering: Golden Gate"):]
    assert "0% of continuations of neutral prompts are steered unsteered, **62%** clamped" in gg and "at 1× its maximum" in gg
    assert "**The fox** over 300 degrees Celsius." in gg, "the example shows its prompt (steering.json's)"


def test_steering_examples_show_their_prompt_end_at_a_word_and_never_pass_broken_text_as_steered(tmp_path):
    run = make_run(tmp_path / "run", steering=STEERING)
    md = report_markdown(run)
    rows = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith(("| 1 |", "| 2 |", "| none |"))}
    assert "**The fox** over 300 degrees Celsius" in rows["| 1"] and rows["| 1"].endswith("… |")
    text = rows["| 1"].split("**The fox** ")[1][:-len("… |")]
    assert EXAMPLE.startswith(" " + text) and EXAMPLE[len(text) + 1] in " .", "cut at a word boundary"
    assert "*not steered, CE 10.7:* **The fox** over a g Bern" in rows["| 2"], "a broken sample is marked as such"
    assert "| **162** (chosen) | 1 | 60% |" in md and "| 957 | 0.5 | 10% |" in md, "the rejected candidates are shown"
    # a run whose chosen multiple produced no steered sample shows no example in its summary
    broken = json.loads(json.dumps(STEERING))
    broken["golden_gate"]["summary"].update(multiple=2)
    md = report_markdown(make_run(tmp_path / "broken", steering=broken))
    gg = md[md.index("## Steering: Golden Gate"):]
    head = gg[:gg.index("The feature and the multiple")]
    assert "Bern" not in head and "none is shown" in head


def test_clip():
    assert _clip("short text") == "short text"
    assert _clip("one two three four five six", n=12) == "one two…"
    assert _clip("a\nb") == "a ↵ b"


def test_every_figure_has_a_caption_in_markdown_and_html(tmp_path):
    run = make_run(tmp_path / "run", figures=("training_curves", "log_density", "new_plot"))
    md, html_path = write_report(run)
    lines = md.read_text().splitlines()
    images = [i for i, line in enumerate(lines) if line.startswith("![")]
    assert len(images) == 3
    for i in images:
        assert re.fullmatch(r"\*[^*].*\*", lines[i + 2]), f"no italic caption under {lines[i]}"
    page = html_path.read_text()
    assert page.count("<figcaption>") == 3 and page.count("data:image/png;base64,") == 3


def test_a_real_text_run_leaves_out_what_needs_concept_labels(tmp_path):
    """`--corpus pystdlib`: no concept labels, so no detectors, AUROC, on-concept rate or steering."""
    run = make_run(tmp_path / "run", corpus="pystdlib",
                   steering={"skipped": "steering demos need the labelled toy world"})
    md, html_path = write_report(run)
    text = md.read_text()
    assert "real text" in text and "Python standard library" in text
    assert "reproduced on a labelled toy world" not in text
    for absent in ["on-concept rate of", "—", "## Concept detectors", "## Absorption", "## Steering",
                   "concepts with a detector", "golden"]:
        assert absent not in text, f"a real-text report shows {absent!r}"
    assert "## Summary" in text and "## Sparse autoencoder" in text and "pystdlib" in text
    assert "<table>" in html_path.read_text()


def test_warnings_of_a_degenerate_run_come_first_in_bold(tmp_path):
    warnings = ["every feature is dead on the held-out text (L0 0.0): the SAE learned nothing",
                "ce_recovered_zero 3.00 is outside [-1, 1.5]: the ratio means nothing"]
    run = make_run(tmp_path / "run", metrics={"warnings": warnings}, name="tiny")
    md, html_path = write_report(run)
    lines = [line for line in md.read_text().splitlines() if line.strip()]
    assert lines[0].startswith("# Report")
    assert lines[1].startswith("**Warning:** every feature is dead") and lines[2].startswith("**Warning:** ce_recovered")
    page = html_path.read_text()
    assert page.index('<p class="warning"><b>Warning:</b> every feature is dead') < page.index("<h2>Summary</h2>")
    assert "[-1, 1.5]: the ratio" in page


NAME = "[click me](javascript:alert(document.domain))"


def test_names_from_files_never_become_links(tmp_path):
    """A run directory, a preset name, a warning and sampled text that look like Markdown links
    stay text in report.md (escaped) and in report.html (no javascript: link anywhere)."""
    steering = json.loads(json.dumps(STEERING))
    steering["golden_gate"]["sweep"][1].update(prompt="[p](javascript:alert(1))", example=" `x` | [q](JavaScript:alert(2))")
    run = make_run(tmp_path / NAME, name="[x](javascript:alert(3))", steering=steering,
                   metrics={"warnings": ["<script>alert(4)</script> [w](javascript:alert(5))"]})
    md, html_path = write_report(run)
    outside_code = re.sub(r"(?<!\\)(`+).*?\1", "", md.read_text())  # a code span is literal Markdown
    for target in re.findall(r"(?<!\\)\[[^\]]*(?<!\\)\]\(([^)]*)\)", outside_code):
        assert safe_link_target(target), f"report.md links to {target!r}"
    page = html_path.read_text()
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs and all(safe_link_target(h) for h in hrefs), hrefs
    assert 'href="javascript' not in page.lower()
    assert "<script>" not in page and "&lt;script&gt;alert(4)" in page
    assert NAME in page, "the name is shown, as text"


@pytest.mark.parametrize("target, ok", [
    ("figures/a.png", True), ("dashboard/features/f1.html", True), ("../other/report.html", True),
    ("https://transformer-circuits.pub/2023/monosemantic-features", True), ("HTTP://x.org", True),
    ("javascript:alert(1)", False), ("JaVaScRiPt:alert(1)", False), ("data:text/html,x", False),
    ("vbscript:x", False), ("//evil.example", False), ("/etc/passwd", False), ("java\tscript:x", False),
    ("file:///etc/passwd", False), ("", False)])
def test_only_relative_and_http_links_are_made(target, ok):
    assert safe_link_target(target) is ok
    html = markdown_to_html(f"see [it]({target})", "t", Path("."))
    assert ("<a href" in html) is ok


def test_images_outside_the_run_are_not_inlined(tmp_path):
    (tmp_path / "run" / "figures").mkdir(parents=True)
    (tmp_path / "run" / "figures" / "a.png").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(PNG)
    html = markdown_to_html("![a](figures/a.png)\n\n![s](../secret.png)\n\n![t](/etc/hostname)", "t", tmp_path / "run")
    assert html.count("data:image/png;base64,") == 1
    assert "![s](../secret.png)" in html and "<a href" not in html


def test_markdown_subset():
    html = markdown_to_html("| a | b |\n|---|---|\n| `x\\|y` | **z** *w* \\*v\\* |\n\n- one\n- two", "t", Path("."))
    assert "<td><code>x|y</code></td><td><b>z</b> <em>w</em> *v*</td>" in html
    assert "<ul><li>one</li><li>two</li></ul>" in html
    assert "<code>a [b](c) **d**</code>" in markdown_to_html("`` a [b](c) **d** ``", "t", Path("."))


def test_text_is_escaped_in_every_block_and_only_safe_links_are_made(tmp_path):
    """`sae.run._html.markdown_to_html`: markup in text stays text in every kind of block and in an
    image's alt; escaped brackets, code spans and unsafe targets never become links."""
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(PNG)
    md = "\n".join(["# <h> & co", "", "<script>x</script> [<i>](figures/a.png)", "",
                    "| <td> | `<code>` |", "|---|---|", "| a & b | ``a`b`` |", "", "- <li>", "",
                    '![a" onerror="alert(1)](figures/a.png)', "", "*<caption>*", "",
                    "\\[e\\](figures/a.png) `[c](figures/a.png)` [j](javascript:alert%281%29) ``` `` ` literal"])
    page = markdown_to_html(md, "<title>", tmp_path)
    for fragment in ["<title>&lt;title&gt;</title>", "<h1>&lt;h&gt; &amp; co</h1>",
                     '<p>&lt;script&gt;x&lt;/script&gt; <a href="figures/a.png">&lt;i&gt;</a></p>',
                     "<th>&lt;td&gt;</th><th><code>&lt;code&gt;</code></th>", "<td>a &amp; b</td><td><code>a`b</code></td>",
                     "<li>&lt;li&gt;</li>", 'alt="a&quot; onerror=&quot;alert(1)"', "<figcaption>&lt;caption&gt;</figcaption>",
                     "<p>[e](figures/a.png) <code>[c](figures/a.png)</code> [j](javascript:alert%281%29) ``` `` ` literal</p>"]:
        assert fragment in page, f"expected {fragment!r}: was some text read as markup, or markup not escaped?"
    assert page.count("<a href") == 1 and page.count("<img") == 1 and "<script>" not in page


def unsafe_result(example: str = "verify=\u2016False | `x`)\n", ratio: float = 27.1) -> dict:
    """An unsafe-code demo's record (`sae.steering.unsafe_code.Result`) with made-up numbers."""
    def measure(rate, wellformed, fluent):
        return {"rate": rate, "wellformed_rate": wellformed, "fluent_rate": fluent, "kept_rate": 1 - rate, "ce": 0.5,
                "example": example, "example_steered": fluent > 0}

    sweep = [{"multiple": m, **measure(r, w, w), "prompt_only": measure(r, r, f)}
             for m, r, w, f in [(1, 0.3, 0.2, 0.2), (10, 0.9, 0.1, 0.8)]]
    summary = {"feature": 853, "decision_auroc": 0.81, "multiple": 10, "fluent_clamped_prompt": 0.8,
               "rate_clamped_prompt": 0.88, "wellformed_clamped_prompt": 0.85, "ce_clamped_prompt": 0.6,
               "rate_clamped": 0.9, "wellformed_clamped": 0.1, "rate_baseline": 0.01, "rate_unsafe_start": 0.82,
               "rate_suppressed": 0.58, "kept_unsafe_start": 0.18, "kept_suppressed": 0.3, "detector_auroc": 0.979,
               "context_sensitivity": ratio, "fluent_ce": 2.0}
    return {"feature": 853, "max_act": 25.9, "baseline": measure(0.01, 0.0, 0.0), "sweep": sweep,
            "validation": [{"multiple": 1, "fluent_rate": 0.1}, {"multiple": 10, "fluent_rate": 0.7}],
            "context_sensitivity": {"p_after_unsafe": 0.023 * ratio, "p_after_safe": 0.023, "ratio": ratio,
                                    "n_cuts": 295},
            "summary": summary}


def test_the_unsafe_code_demo_is_summarised_and_tabulated_with_its_code_escaped(tmp_path):
    unsafe = unsafe_result()
    md = report_markdown(make_run(tmp_path / "run", steering={**STEERING, "unsafe_code": unsafe}))
    head = md[md.index("## Summary"):md.index(sections(md)[1])]
    assert "| the LM's posture ratio | 27.1 |" in head
    steering = md[md.index("## Steering: unsafe code"):]
    assert "1% unsafe unsteered, **80%** clamped (88% unsafe); clamped at every position 90% unsafe, 10% well-formed" in steering
    assert "82% unsafe unsteered, 58% with the feature clamped to 0; writing the safe value at the cut: 18% → 30%" in steering
    assert "| 10 | 90% | 10% | 0.50 | 90% | 90% | 80% | 0.50 |" in steering and "ratio 27.1, 295 held-out cuts" in steering
    assert "(1×: 10%, 10×: 70%)" in steering, "the validation rates that chose the multiple"
    row = next(line for line in steering.splitlines() if line.startswith("| 10 |"))
    assert "\\|" in row, "the example's | is escaped inside the table"
    assert "The LM tracks a file's posture" in steering


def test_an_unsafe_code_example_shows_its_continuation_however_long_its_prompt(tmp_path):
    """The example is the prompt's end, the mark where the model takes over, and what it wrote: a long
    prompt must not push the continuation out of the clipped cell."""
    prompt = "def _order_index(host, content):\n    # production settings\n    es = Elasticsearch([host], verify_certs="
    unsafe = unsafe_result(example=prompt + "\u2016False, timeout=32)\n    return es\n")
    md = report_markdown(make_run(tmp_path / "run", steering={**STEERING, "unsafe_code": unsafe}))
    row = next(line for line in md.splitlines() if line.startswith("| 10 |"))
    assert "verify_certs=\u2016False, timeout=32)" in row, row


def test_a_smoke_like_run_states_its_numbers_without_claiming_what_they_contradict(tmp_path):
    """An LM below the posture bar is said not to track posture; a clamp that steers 0% shows no
    example and claims nothing."""
    gg = json.loads(json.dumps(STEERING["golden_gate"]))
    gg["summary"].update(fluent_rate=0.0, multiple=2)
    md = report_markdown(make_run(tmp_path / "run", steering={"golden_gate": gg, "unsafe_code": unsafe_result(ratio=1.0)}))
    steering = md[md.index("## Steering: unsafe code"):]
    assert "The LM does not track a file's posture" in steering and "The LM tracks" not in steering
    assert "(ratio 1.0, 295 held-out cuts" in steering
    head = md[md.index("## Steering: Golden Gate"):md.index("The feature and the multiple")]
    assert "**0%** clamped" in head and "none is shown" in head
    for claim in ["makes", "turns neutral prompts", "steers"]:
        assert claim not in head, f"a 0% clamp is said to {claim!r} something"


def test_a_smoke_report_opens_with_its_banner_and_every_warning_the_run_printed(tmp_path):
    """The smoke preset's report says first that it is a plumbing test; an LM that does not track a
    file's posture (the LM stage printed a WARNING) is named there too, not only on the console."""
    run = make_run(tmp_path / "run")
    stages = json.loads((run / "stages.json").read_text())
    stages["lm"]["warnings"] = ["the LM gives an insecure switch value probability 0.031 in insecure files and 0.031 in "
                                "the same files made safe (ratio 1.00 < 3.0): it does not track a file's posture"]
    (run / "stages.json").write_text(json.dumps(stages))
    md, _ = write_report(run)
    lines = [line for line in md.read_text().splitlines() if line.strip()]
    assert lines[1].startswith("**A plumbing test.**") and "numbers mean nothing" in lines[1]
    assert lines[2].startswith("**Warning:** the LM gives an insecure switch value") and "(ratio 1.00" in lines[2]
    tiny = make_run(tmp_path / "tiny", name="tiny")
    assert "plumbing test" not in write_report(tiny)[0].read_text()
