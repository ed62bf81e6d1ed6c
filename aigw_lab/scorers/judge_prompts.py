"""The LLM-as-judge prompts and the parsers of their answers.

The prompts follow MT-Bench (Zheng et al., 2023, "Judging LLM-as-a-Judge with MT-Bench and
Chatbot Arena"): single-answer grading on a 1-10 scale, written ``[[N]]``, with an optional
reference answer; pairwise comparison ending in ``[[A]]``, ``[[B]]`` or ``[[C]]`` (a tie).

Every user message starts with a marker line (`SINGLE_MARKER`, `PAIRWISE_MARKER`) so that
a judge prompt can be recognised in the call log, and by the simulated fleet, which answers
it like a judge (`aigw_lab.sim.judge`). This module imports nothing heavy: the
simulator reads it on its request path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "SINGLE_MARKER",
    "PAIRWISE_MARKER",
    "SINGLE_SYSTEM",
    "PAIRWISE_SYSTEM",
    "JudgePrompt",
    "single_prompt",
    "pairwise_prompt",
    "parse_rating",
    "parse_verdict",
    "parse_judge_prompt",
]

SINGLE_MARKER = "[aigw-judge single v1]"
PAIRWISE_MARKER = "[aigw-judge pairwise v1]"

SINGLE_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the response provided by "
    "an AI assistant to the user question displayed below. {focus}"
    "Begin your evaluation by providing a short explanation. Be as objective as possible. "
    "After providing your explanation, you must rate the response on a scale of 1 to 10 by "
    'strictly following this format: "[[rating]]", for example: "Rating: [[5]]".'
)
PAIRWISE_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by "
    "two AI assistants to the user question displayed below. {focus}"
    "Avoid any position biases and ensure that the order in which the responses were "
    "presented does not influence your decision. Do not allow the length of the responses "
    "to influence your evaluation. Do not favor certain names of the assistants. Be as "
    "objective as possible. After providing your explanation, output your final verdict by "
    'strictly following this format: "[[A]]" if assistant A is better, "[[B]]" if '
    'assistant B is better, and "[[C]]" for a tie.'
)
_DEFAULT_FOCUS = (
    "Your evaluation should consider correctness, helpfulness, relevance and level of detail. "
)
_REFERENCE_FOCUS = (
    "Your evaluation should consider correctness above all. You will be given a reference "
    "answer and the assistant's answer. Identify any mistakes by comparing with the "
    "reference. "
)

_QUESTION = ("[Question]", "[End of Question]")
_REFERENCE = ("[The Start of Reference Answer]", "[The End of Reference Answer]")
_ANSWER = ("[The Start of Assistant's Answer]", "[The End of Assistant's Answer]")
_ANSWER_A = ("[The Start of Assistant A's Answer]", "[The End of Assistant A's Answer]")
_ANSWER_B = ("[The Start of Assistant B's Answer]", "[The End of Assistant B's Answer]")


def _block(tags: tuple[str, str], text: str) -> str:
    return f"{tags[0]}\n{text}\n{tags[1]}"


def _system(template: str, rubric: str | None, has_reference: bool) -> str:
    focus = _REFERENCE_FOCUS if has_reference else _DEFAULT_FOCUS
    if rubric:
        focus += f"Apply this rubric: {rubric.strip()} "
    return template.format(focus=focus)


def single_prompt(
    question: str, answer: str, *, reference: str | None = None, rubric: str | None = None
) -> tuple[str, str]:
    """The (system, user) messages asking for a 1-10 grade of ``answer``."""
    parts = [SINGLE_MARKER, _block(_QUESTION, question)]
    if reference is not None:
        parts.append(_block(_REFERENCE, reference))
    parts.append(_block(_ANSWER, answer))
    return _system(SINGLE_SYSTEM, rubric, reference is not None), "\n\n".join(parts)


def pairwise_prompt(
    question: str,
    answer_a: str,
    answer_b: str,
    *,
    reference: str | None = None,
    rubric: str | None = None,
) -> tuple[str, str]:
    """The (system, user) messages asking which of two answers is better."""
    parts = [PAIRWISE_MARKER, _block(_QUESTION, question)]
    if reference is not None:
        parts.append(_block(_REFERENCE, reference))
    parts += [_block(_ANSWER_A, answer_a), _block(_ANSWER_B, answer_b)]
    return _system(PAIRWISE_SYSTEM, rubric, reference is not None), "\n\n".join(parts)


# The last "[[N]]" wins (a judge may quote the format before using it); then "Rating: N",
# "N/10", "Score: N" as judges write when they ignore the format.
_RATING_BRACKETS = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*(?:/\s*10\s*)?\]\]")
_RATING_LOOSE = re.compile(
    r"(?:\b(?:rating|score|grade)\b\s*(?:is|of)?\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)(?!\.?\d)"
    r"|\b(\d+(?:\.\d+)?)\s*/\s*10\b)",
    re.IGNORECASE,
)
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
_VERDICT_LOOSE = re.compile(
    r"\b(?:final\s+)?verdict\b\s*(?:is)?\s*[:=]?\s*\**\s*\[?\s*([ABC])\b|\b(tie)\b", re.IGNORECASE
)


def parse_rating(text: str, *, low: float = 1.0, high: float = 10.0) -> float | None:
    """The grade in a judge's answer, or None when there is none in ``[low, high]``."""
    found = _RATING_BRACKETS.findall(text)
    if found:
        candidates = [float(found[-1])]
    else:
        candidates = [float(a or b) for a, b in _RATING_LOOSE.findall(text)][-1:]
    if candidates and low <= candidates[0] <= high:
        return candidates[0]
    return None


def parse_verdict(text: str) -> str | None:
    """``"A"``, ``"B"`` or ``"C"`` (tie) from a pairwise judge's answer, or None."""
    found = _VERDICT.findall(text)
    if found:
        return found[-1]
    loose = _VERDICT_LOOSE.findall(text)
    if loose:
        letter, tie = loose[-1]
        return "C" if tie else letter.upper()
    return None


@dataclass(frozen=True, slots=True)
class JudgePrompt:
    """A judge prompt taken apart (for the simulated judge): ``mode`` is ``"single"`` or
    ``"pairwise"``; ``answers`` holds one answer, or A and B."""

    mode: str
    question: str
    reference: str | None
    answers: tuple[str, ...]


def _section(text: str, tags: tuple[str, str]) -> str | None:
    start = text.find(tags[0])
    if start < 0:
        return None
    start += len(tags[0])
    end = text.find(tags[1], start)
    return text[start : end if end >= 0 else len(text)].strip("\n")


def parse_judge_prompt(text: str) -> JudgePrompt | None:
    """The parts of a user message built by `single_prompt` or `pairwise_prompt`, or None
    when ``text`` is not one."""
    head = text.lstrip()
    answer_tags: tuple[tuple[str, str], ...]
    if head.startswith(SINGLE_MARKER):
        mode, answer_tags = "single", (_ANSWER,)
    elif head.startswith(PAIRWISE_MARKER):
        mode, answer_tags = "pairwise", (_ANSWER_A, _ANSWER_B)
    else:
        return None
    question = _section(head, _QUESTION)
    answers = tuple(_section(head, tags) for tags in answer_tags)
    if question is None or any(a is None for a in answers):
        return None
    return JudgePrompt(mode, question, _section(head, _REFERENCE), answers)  # type: ignore[arg-type]
