"""EmbeddingSimilarity with the hashing test double, and once with the real default model."""

from __future__ import annotations

import pytest

from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.scorers import EmbeddingSimilarity


def test_similarity_ranks_a_close_answer_above_an_unrelated_one(item, respond):
    scorer = EmbeddingSimilarity(HashingEmbedder(), threshold=0.5)
    reference = item("The library opens at 8 a.m. on weekdays from March.")
    close = scorer.score(reference, respond("From March, the library opens at 8 a.m. on weekdays."))
    far = scorer.score(reference, respond("Quarterly revenue grew by four percent."))
    assert 0.5 < close.value <= 1.0 and far.value < close.value
    assert (close.label, far.label) == ("similar", "dissimilar")
    assert close.details["embedder"] == "hashing-256-3"
    same = scorer.score(reference, respond(reference.reference))
    assert same.value == pytest.approx(1.0, abs=1e-5)
    assert scorer.score(reference, respond("")).value == 0.0
    assert scorer.score(item(None), respond("x")).value is None


async def test_ascore_embeds_off_the_event_loop(item, respond):
    scorer = EmbeddingSimilarity(HashingEmbedder())
    score = await scorer.ascore(item("a cat sat"), respond("a cat sat"))
    assert score.value == pytest.approx(1.0, abs=1e-5)


def test_the_default_model_is_semantic(item, respond):
    """The real all-MiniLM-L6-v2 (loads in a few seconds): a paraphrase beats spelling."""
    scorer = EmbeddingSimilarity()
    reference = item("The meeting was moved to next Tuesday.")
    paraphrase = scorer.score(
        reference, respond("They rescheduled the meeting for the following Tuesday.")
    )
    lookalike = scorer.score(reference, respond("The melting was mooed to neat Tuesdays."))
    unrelated = scorer.score(reference, respond("Penguins live in the southern hemisphere."))
    assert paraphrase.value > lookalike.value > unrelated.value
    assert paraphrase.details["embedder"] == "all-MiniLM-L6-v2"
