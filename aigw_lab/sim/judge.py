"""The simulated fleet as an LLM judge: answers to aigw_lab's judge prompts.

A simulated model that receives a prompt built by `aigw_lab.scorers.judge_prompts` (it
starts with the judge marker) answers like a judge instead of writing filler: it compares
the judged answer with the reference (the prompt's, else the bundled dataset item's), using
the same checks as aigw_lab's scorers, and grades it high (7-10) when it matches, low (1-3)
when it does not. With a probability that falls as the model gets weaker, it misjudges:
stronger simulated models judge more accurately. Pairwise prompts get ``[[A]]``, ``[[B]]``
or ``[[C]]``, and weaker models show a position bias on ties, preferring answer A.

Like everything in the fleet this is simulated (the text says so): its grades measure the
plumbing of judge-based evaluation, never the quality of a real judge model. Every draw is
a hash of the fleet's seed, the model and the prompt, so the same judgement repeats.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aigw_lab.datasets.items import DatasetItem
from aigw_lab.scorers.auto import auto_scorer
from aigw_lab.scorers.judge_prompts import parse_judge_prompt
from aigw_lab.scorers.structured import extract_json
from aigw_lab.scorers.text import extract_number, normalise_text
from aigw_lab.types import ChatResponse, Usage

if TYPE_CHECKING:
    from aigw_lab.scorers.judge_prompts import JudgePrompt
    from aigw_lab.sim.catalog import SimModel

__all__ = ["judge_reply", "judge_accuracy", "JUDGE_PREFIX"]

#: What every judge prompt starts with (the markers of `aigw_lab.scorers.judge_prompts`):
#: checked first, so other prompts cost one ``startswith``.
JUDGE_PREFIX = "[aigw-judge "
_NOTE = "(simulated judge)"


def _unit(*parts: object) -> float:
    """A uniform number in (0, 1) determined by ``parts``."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


def judge_accuracy(model: SimModel) -> float:
    """How often ``model`` judges an answer's correctness right: halfway between chance and
    certainty by its mean accuracy over the task categories (0.77 for sim-nano, 0.94 for
    sim-large)."""
    accuracies = list(model.accuracy.values())
    return 0.5 + 0.5 * (sum(accuracies) / len(accuracies) if accuracies else 0.5)


def judge_reply(
    model: SimModel,
    prompt: str,
    *,
    seed: int,
    lookup: Callable[[str], Mapping[str, Any] | None] | None = None,
) -> str | None:
    """The simulated judge's answer to ``prompt`` (the last user message), or None when the
    prompt is not a judge prompt. ``lookup`` finds the dataset item of a question (the
    fleet's `item_for`), for its reference and answer type."""
    if not prompt[:64].lstrip().startswith(JUDGE_PREFIX):
        return None
    parsed = parse_judge_prompt(prompt)
    if parsed is None:
        return None
    item = lookup(parsed.question) if lookup is not None else None
    reference = parsed.reference
    if reference is None and item is not None:
        reference = _as_text(item.get("reference"))
    skill = judge_accuracy(model)
    if parsed.mode == "single":
        return _grade(model, seed, parsed, reference, item, skill)
    return _compare(model, seed, parsed, reference, item, skill)


def _grade(
    model: SimModel,
    seed: int,
    parsed: JudgePrompt,
    reference: str | None,
    item: Mapping[str, Any] | None,
    skill: float,
) -> str:
    answer = parsed.answers[0]
    if reference is None:
        grade = 4 + int(_unit(seed, "judge-noref", model.id, parsed.question, answer) * 4)
        return f"{_NOTE} Without a reference I cannot check correctness. Rating: [[{grade}]]"
    good = _perceived(model, seed, parsed.question, answer, reference, item, skill)
    u = _unit(seed, "judge-grade", model.id, parsed.question, answer)
    if good:
        grade = 7 + int(u * 4)
        reason = "The answer agrees with the reference."
    else:
        grade = 1 + int(u * 3)
        reason = "The answer does not match the reference."
    return f"{_NOTE} {reason} Rating: [[{grade}]]"


def _compare(
    model: SimModel,
    seed: int,
    parsed: JudgePrompt,
    reference: str | None,
    item: Mapping[str, Any] | None,
    skill: float,
) -> str:
    answer_a, answer_b = parsed.answers
    if reference is None:
        good_a = good_b = True  # nothing to check against: a tie, up to position bias
    else:
        good_a = _perceived(model, seed, parsed.question, answer_a, reference, item, skill)
        good_b = _perceived(model, seed, parsed.question, answer_b, reference, item, skill)
    if good_a != good_b:
        verdict = "A" if good_a else "B"
        reason = f"Assistant {verdict}'s answer agrees with the reference; the other's does not."
    # A tie: a weak judge often prefers whichever answer it read first (position bias).
    elif _unit(seed, "judge-position", model.id, answer_a, answer_b) < 1.5 * (1.0 - skill):
        verdict, reason = "A", "Both answers look alike; the first one reads slightly better."
    else:
        verdict, reason = "C", "Both answers are equally good." if good_a else "Both are wrong."
    return f"{_NOTE} {reason} [[{verdict}]]"


def _perceived(
    model: SimModel,
    seed: int,
    question: str,
    answer: str,
    reference: str,
    item: Mapping[str, Any] | None,
    skill: float,
) -> bool:
    """Whether the judge takes ``answer`` for correct: the truth, flipped with probability
    ``1 - skill``. The draw depends on the answer, not its position in the prompt."""
    truth = _matches(answer, reference, item)
    key = " ".join(answer.lower().split())
    if _unit(seed, "judge-sees", model.id, question, key) < skill:
        return truth
    return not truth


def _matches(answer: str, reference: str, item: Mapping[str, Any] | None) -> bool:
    """Whether ``answer`` is right: the item's own scorer when the prompt's reference is the
    item's, else a comparison of normalised text, numbers or JSON."""
    if item is not None and _as_text(item.get("reference")) == reference:
        return _item_scorer_says(item, answer)
    said, expected = normalise_text(answer), normalise_text(reference)
    if not expected:
        return not said
    if said == expected or (len(expected.split()) <= 5 and f" {expected} " in f" {said} "):
        return True
    number = extract_number(reference) if len(reference.split()) <= 3 else None
    if number is not None:
        got = extract_number(answer)
        return got is not None and abs(got - number) <= 1e-9 * max(1.0, abs(number))
    try:
        return extract_json(reference) == extract_json(answer)
    except ValueError:
        pass
    # Free text (summaries): enough of the reference's words.
    words = set(expected.split())
    return len(words & set(said.split())) >= 0.7 * len(words)


def _item_scorer_says(item: Mapping[str, Any], answer: str) -> bool:
    dataset_item = DatasetItem.from_dict(item)
    response = ChatResponse(
        text=answer,
        finish_reason="stop",
        usage=Usage(),
        provider="sim-judge",
        model="sim-judge",
        simulated=True,
    )
    return auto_scorer(dataset_item).score(dataset_item, response).value == 1.0


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
