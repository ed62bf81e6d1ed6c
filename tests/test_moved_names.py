"""Names moved down a layer (issue 11 §5) keep their old import paths, as the same objects."""

import aigw_lab
import aigw_lab.experiments
import aigw_lab.experiments.results
import aigw_lab.scorers
import aigw_lab.scorers.base
import aigw_lab.store.experiment_frame
import aigw_lab.types


def test_score_is_one_class_under_every_path():
    # In types, below the store, so the store records scores without importing the scorers.
    assert aigw_lab.scorers.base.Score is aigw_lab.types.Score
    assert aigw_lab.scorers.Score is aigw_lab.Score is aigw_lab.types.Score


def test_experiment_frame_is_one_function_under_every_path():
    # In the store (a query over the log alone), so datasets.from_log reads it from below.
    frame = aigw_lab.store.experiment_frame
    assert aigw_lab.experiments.results.experiment_frame is frame.experiment_frame
    assert aigw_lab.experiments.experiment_frame is frame.experiment_frame
    assert aigw_lab.experiments.results.FRAME_COLUMNS is frame.FRAME_COLUMNS
    assert aigw_lab.experiments.FRAME_COLUMNS is frame.FRAME_COLUMNS
