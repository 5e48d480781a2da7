"""The toy world: determinism, exact labels, variety, splits, the judge, and real-text loaders."""

import random
import re

import numpy as np
import pytest

from sae.world import corpus as C
from sae.world.corpus import CONCEPTS, NO_CONCEPT, concept_segments, document_text, toy_documents, toy_tokens


def test_at_least_fourteen_concepts_with_the_papers_features():
    for name in ["golden_gate", "einstein", "dilemma", "manipulation", "code", "unsafe_code",
                 "dna", "base64", "arabic", "arithmetic"]:
        assert name in CONCEPTS
    assert len(CONCEPTS) >= 14, "the toy world needs the 10 paper concepts plus >= 4 everyday distractors"


def test_same_seed_same_bytes_and_labels(toy_tokenizer):
    a = [next(toy_documents(7)) for _ in range(1)] + [d for d, _ in zip(toy_documents(7), range(50))]
    b = [next(toy_documents(7)) for _ in range(1)] + [d for d, _ in zip(toy_documents(7), range(50))]
    assert a == b, "the same seed must give byte-identical documents"
    t1, l1 = toy_tokens(toy_tokenizer, 20_000, seed=3)
    t2, l2 = toy_tokens(toy_tokenizer, 20_000, seed=3)
    assert np.array_equal(t1, t2) and np.array_equal(l1, l2)
    t3, _ = toy_tokens(toy_tokenizer, 20_000, seed=4)
    assert not np.array_equal(t1, t3), "different seeds should give different streams"


def test_train_and_val_streams_never_share_documents():
    train = {document_text(d) for d, _ in zip(toy_documents(0, "train"), range(2000))}
    val = {document_text(d) for d, _ in zip(toy_documents(0, "val"), range(2000))}
    assert not train & val, "a validation document also appears in training: the splits share a seed?"
    # Seed 1 of train is not seed 0 of val either: splits derive generators from different strings.
    train1 = [document_text(d) for d, _ in zip(toy_documents(1, "train"), range(20))]
    val0 = [document_text(d) for d, _ in zip(toy_documents(0, "val"), range(20))]
    assert train1 != val0


def test_documents_mix_two_to_five_concepts():
    rng = random.Random(0)
    for _ in range(300):
        segs = C.generate_segments(rng)
        names = [n for n, _ in segs]
        assert 2 <= len(segs) <= 5, f"a document has {len(segs)} segments; expected 2-5"
        assert all(a != b for a, b in zip(names, names[1:])), "neighbouring segments must differ"
        assert not any(a in C.CODE_FAMILY and b in C.CODE_FAMILY for a, b in zip(names, names[1:])), \
            "two code files must not touch (a file keeps one posture)"
        for name, pieces in segs:
            code = {C.CONCEPT_ID[c] for c in C.CODE_FAMILY}
            want = code if name in C.CODE_FAMILY else {C.CONCEPT_ID[name]}
            assert {cid for cid, _ in pieces} <= want


def test_labels_align_with_tokens_for_every_concept(toy_tokenizer):
    """Tokens are the document's text encoded as a whole (labels never change tokenisation), and
    each token carries the label of the piece its last byte comes from."""
    docs = [d for d, _ in zip(toy_documents(5), range(400))]
    tokens, labels = C.tokenize_documents(toy_tokenizer, docs)
    assert len(tokens) == len(labels)
    seen = set()
    pos = 0
    for doc in docs:
        ids = toy_tokenizer.encode(document_text(doc))
        assert tokens[pos:pos + len(ids)].tolist() == ids, "a document must tokenise as its plain text does"
        ends, piece_ends, n = [], [], 0
        for i in ids:  # byte offset of each token's last byte
            n += len(toy_tokenizer.token_bytes(i))
            ends.append(n - 1)
        n = 0
        for cid, text in doc:
            n += len(text.encode("utf-8"))
            piece_ends.append((n, cid))
        for k, e in enumerate(ends):
            want = next(cid for end, cid in piece_ends if e < end)
            assert labels[pos + k] == want, f"token {k} ({toy_tokenizer.token_str(ids[k])!r}) has the wrong label"
            seen.add(want)
        pos += len(ids)
        assert tokens[pos] == toy_tokenizer.eot_token and labels[pos] == NO_CONCEPT
        pos += 1
    assert pos == len(tokens)
    assert seen == set(range(len(CONCEPTS))), "every concept should appear in 400 documents"


def test_unsafe_and_safe_code_tokenise_alike_before_the_risk_site(toy_tokenizer):
    """No label leak through token boundaries: an insecure file and the same text with its first
    switch turned on give the same tokens up to that switch's value, so only the text (the
    comment, the value) tells them apart, never where a token starts."""
    from sae.world.code import RISKS
    segs = [s for s in concept_segments("unsafe_code", 50, seed=4) if any(CONCEPTS[c] == "unsafe_code" for c, _ in s)]
    assert len(segs) >= 45  # an insecure file keeps every check on only by chance (SWITCH_OFF_RATE)
    for seg in segs:
        cut = next(i for i, (cid, _) in enumerate(seg) if CONCEPTS[cid] == "unsafe_code")
        piece = seg[cut][1]
        before, safe_value, unsafe_value = next(r for r in RISKS.values() if r[0] + r[2] in piece)
        head = document_text(seg[:cut]) + piece[:piece.index(before + unsafe_value) + len(before)]
        tu, lu = C.tokenize_documents(toy_tokenizer, [seg[:cut] + [(seg[cut][0], head[len(document_text(seg[:cut])):] + unsafe_value)]])
        ts, _ = C.tokenize_documents(toy_tokenizer, [[(C.CONCEPT_ID["code"], head + safe_value)]])
        k = len(toy_tokenizer.encode(head + unsafe_value)) - 1  # the token of the value
        assert tu[:k].tolist() == ts[:k].tolist(), f"tokens differ before the value in {head!r}"
        assert (lu[:k] == C.CONCEPT_ID["unsafe_code"]).any(), "the comment and the switch line are unsafe_code"


def test_unsafe_label_covers_the_insecure_switch_lines_and_their_comments():
    """`unsafe_code` is each line that turns a switch off, with the comment above it; the rest
    of the file (headers, lines that keep their checks on) is `code` and turns nothing off."""
    from sae.world.code import POSTURE_COMMENTS, RISKS
    switch = re.compile("|".join(re.escape(b) for b, _, _ in RISKS.values()))
    for seg in concept_segments("unsafe_code", 50, seed=2):
        kinds = [CONCEPTS[cid] for cid, _ in seg]
        assert "unsafe_code" in kinds and "code" in kinds
        for cid, text in seg:
            if CONCEPTS[cid] == "unsafe_code":
                comment, _, line = text.strip(" ").partition("\n")
                assert comment[2:] in POSTURE_COMMENTS[1], text
                assert "\n" not in line and "False" in line, text
                assert C.concept_hits(text).get("unsafe_code"), text
            else:
                assert not C.concept_hits(text).get("unsafe_code"), f"{text!r} turns a check off but is labelled code"
                assert not switch.search(text) or "True" in text


def test_a_files_posture_sets_its_switches_and_comments_and_flipping_swaps_them():
    """A safe file turns a switch off now and then, an insecure one mostly; each speaks through
    its comments; `demos._flip` puts a file in the other posture (every value and comment)."""
    from sae.steering.unsafe_code import _flip
    from sae.world.code import CODE_TEMPLATES, POSTURE_COMMENTS, SWITCH_OFF_RATE
    for concept in ("code", "unsafe_code"):
        text = "".join(document_text(s) for s in concept_segments(concept, 300, seed=9))
        off = text.count("False") / (text.count("False") + text.count("True"))
        assert abs(off - SWITCH_OFF_RATE[concept]) < 0.05, (concept, off)
        own, other = POSTURE_COMMENTS[concept == "unsafe_code"], POSTURE_COMMENTS[concept == "code"]
        assert any(f"# {c}\n" in text for c in own) and not any(f"# {c}\n" in text for c in other)
        flipped = _flip(text)
        assert (flipped.count("True"), flipped.count("False")) == (text.count("False"), text.count("True"))
        assert any(f"# {c}\n" in flipped for c in other) and not any(f"# {c}\n" in flipped for c in own)
        assert _flip(flipped) == text
    assert len({k for t in CODE_TEMPLATES for k in re.findall(r"\{R:(\w+)\}", t)}) >= 8, "need many kinds of switch"


def test_a_switch_on_a_files_first_line_gets_its_comment_above_it():
    """A code template whose first switch stands on its first line (no line break before it): the
    posture comment goes above that line, as for any other switch line."""
    from sae.world.code import POSTURE_COMMENTS, set_switches

    rng = random.Random(0)
    pieces = set_switches("unsafe_code", ["requests.get(url, ", ", timeout=5)\nx = 1\n"], ["verify"], rng)
    text = "".join(t for _, t in pieces)
    first = text.splitlines()[0]
    assert first.startswith("# ") and first[2:] in POSTURE_COMMENTS[1], text
    assert text.splitlines()[1].startswith("requests.get(url, verify=")


@pytest.mark.parametrize("concept", CONCEPTS)
def test_each_concept_has_many_templates_and_distinct_sentences(concept, toy_tokenizer):
    c = C._concept(concept)
    assert len(c.templates) >= 25, f"{concept} has {len(c.templates)} templates; need >= 25"
    rng = random.Random(1)
    distinct, n_tokens = set(), 0
    while n_tokens < 1_000_000 and len(distinct) < 5000:  # 5,000 distinct ones found: enough
        block = ["".join(t for _, t in c.sentence(rng)) for _ in range(1000)]
        n_tokens += sum(map(len, toy_tokenizer.encoding.encode_ordinary_batch(block)))
        distinct.update(block)
    distinct = len(distinct)
    assert distinct >= 5000, f"{concept}: only {distinct} distinct sentences in 1M tokens; add templates or fillers"


def test_judge_top1_precision_on_heldout_segments(toy_tokenizer):
    """concept_hits is the judge of generated text: it must name the right concept >= 95% of the time."""
    for concept in CONCEPTS:
        segs = [s for s in concept_segments(concept, 400, seed=11, split="test")
                if len(toy_tokenizer.encode(document_text(s))) >= 30][:200]
        assert len(segs) >= 100
        # a safe file that turns one check off (`SWITCH_OFF_RATE`) is rightly judged unsafe code
        want = ["unsafe_code" if concept in C.CODE_FAMILY and any(cid == C.CONCEPT_ID["unsafe_code"] for cid, _ in s)
                else concept for s in segs]
        right = sum(C.top_concept(document_text(s)) == w for s, w in zip(segs, want))
        assert right / len(segs) >= 0.95, f"judge precision for {concept}: {right / len(segs):.2f} < 0.95"


def test_judge_examples():
    assert C.concept_hits("The Golden Gate Bridge rises above the fog.")["golden_gate"] >= 2
    assert C.top_concept("r = requests.get(url, verify=False)\n    return r.json()") == "unsafe_code"
    assert C.top_concept("def f(url):\n    return requests.get(url).json()") == "code"
    assert C.top_concept("ACGTTGCAACGTAGGT") == "dna"
    assert C.top_concept("Nothing to see here") is None


def test_unknown_names_give_clear_errors():
    with pytest.raises(ValueError, match="valid concepts"):
        C.concept_id("golden_bridge")
    with pytest.raises(ValueError, match="valid splits"):
        next(toy_documents(0, "validation"))
    with pytest.raises(ValueError, match="neither"):
        C.text_files("no/such/corpus")


def test_pystdlib_corpus_is_split_by_file():
    train = C.text_files("pystdlib", "train")
    val = C.text_files("pystdlib", "val")
    assert len(train) > 100 and len(val) > 5
    assert not {n for n, _ in train} & {n for n, _ in val}


def test_user_text_directory(tmp_path, toy_tokenizer):
    (tmp_path / "a.txt").write_text("hello world " * 20)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("# title\nsome text")
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    files = C.text_files(str(tmp_path), "train")
    assert {n for n, _ in files} <= {"a.txt", "sub/b.md"} and files
    tokens, labels = C.text_tokens(toy_tokenizer, str(tmp_path / "a.txt"))
    assert (labels == NO_CONCEPT).all() and len(tokens) > 10


def test_bad_user_text_gives_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .txt/.md/.py files"):
        C.text_files(str(empty))
    binary = tmp_path / "x.txt"
    binary.write_bytes(b"abc\x00\x01\x02")
    with pytest.raises(ValueError, match="binary"):
        C.text_files(str(binary))
    latin = tmp_path / "y.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="not valid UTF-8"):
        C.text_files(str(latin))


def test_a_concept_spec_with_a_misspelled_key_is_refused_with_the_valid_keys():
    from sae.world.spec import ConceptSpec

    with pytest.raises(ValueError, match=r"unknown key\(s\) \['keyword'\].*keywords"):
        ConceptSpec.of({"templates": ["a {x}."], "slots": {"x": ["b"]}, "keyword": ["b"]}, "astronomy")
    assert ConceptSpec.of({"templates": ["a {x}."], "slots": {"x": ["b"]}}).joiner == " "
