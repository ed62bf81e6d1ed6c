"""BackgroundIVFIndex's adaptive search: a lookup whose best at ``nprobe`` clusters is below
``deep_below`` (the cache's threshold) searches again at ``deep_nprobe``, so a neighbour that
sits only in a farther cluster is still found; a lookup that found a close entry searches
once. Built on an index whose clusters are known: 16 tight groups around orthogonal axes,
and one stored vector between two of them."""

import numpy as np
import pytest

from aigw_lab.errors import ConfigError
from aigw_lab.gateway.vector_index_ann import BackgroundIVFIndex
from tests.gateway._vector_helpers import DIM, Manual

GROUPS = 16
BETWEEN = 10_000  # the id of the vector stored between two groups


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def axes(weights):
    """A unit vector with ``weights`` on the first axes."""
    row = np.zeros(DIM, dtype=np.float32)
    row[: len(weights)] = weights
    return unit(row)


def grouped_index(**kwargs):
    """16 groups of 200 vectors, each tight around one axis (k-means puts one cluster on
    each), plus ``BETWEEN``: 0.75 axis 0 + 0.66 axis 1, so it falls in axis 0's cluster."""
    rng = np.random.default_rng(0)
    rows = np.repeat(np.eye(DIM, dtype=np.float32)[:GROUPS], 200, axis=0)
    rows = unit(rows + 0.05 * rng.standard_normal(rows.shape).astype(np.float32))
    spawn = Manual()
    index = BackgroundIVFIndex(DIM, exact_below=1000, nlist=GROUPS, nprobe=1, spawn=spawn, **kwargs)
    index.add_many(np.arange(len(rows)), rows)
    index.add(BETWEEN, axes([0.75, 0.66]))
    spawn.run_all()
    assert index.approximate and index.tail == 0 and index.nlist == GROUPS
    return index


def probed_first(index, query):
    """The cluster a one-cluster search of ``query`` probes."""
    _, lists = index._ivf.quantizer.search(query.reshape(1, -1), 1)
    return int(lists[0, 0])


def test_a_neighbour_only_in_a_farther_cluster_is_found_by_default(faiss):
    index = grouped_index()  # the default deep_nprobe and deep_below
    query = axes([0.66, 0.75])  # nearest axis 1; BETWEEN is at cosine 0.99
    assert float(query @ index.vector(BETWEEN)) > 0.98
    # The premise: one cluster probed is axis 1's, and BETWEEN is not in it, so a single
    # pass at nprobe 1 finds only axis-1 vectors, all below the 0.9 threshold.
    assert probed_first(index, query) != probed_first(index, index.vector(BETWEEN))
    scores, ids = index._ivf.search(query.reshape(1, -1), 4)
    assert BETWEEN not in ids[0].tolist() and scores[0].max() < 0.9

    assert index.search(query, 4)[0][0] == BETWEEN


def test_one_pass_when_deep_nprobe_is_off(faiss):
    index = grouped_index(deep_nprobe=None)
    found = index.search(axes([0.66, 0.75]), 4)
    assert found[0][0] != BETWEEN and found[0][1] < 0.9


def test_a_close_find_is_not_searched_again(faiss, monkeypatch):
    index = grouped_index()
    passes = []
    search_ivf = index._search_ivf

    def counted(*args):
        passes.append(args[-1])  # the nprobe of the pass (None: the index's own)
        return search_ivf(*args)

    monkeypatch.setattr(index, "_search_ivf", counted)
    hit = index.search(axes([0.1, 1.0]), 4)  # near axis 1's group: above 0.9 at once
    assert hit[0][1] >= 0.9 and passes == [None]
    passes.clear()
    index.search(axes([0.66, 0.75]), 4)  # a miss at one cluster: one deeper pass
    assert passes == [None, GROUPS]  # deep_nprobe 32, as many as there are clusters


def test_deep_below_is_the_line_between_one_pass_and_two(faiss):
    query = axes([0.66, 0.75])
    first = grouped_index(deep_nprobe=None).search(query, 1)[0][1]  # about 0.75
    assert grouped_index(deep_below=first - 0.01).search(query, 1)[0][0] != BETWEEN
    assert grouped_index(deep_below=first + 0.01).search(query, 1)[0][0] == BETWEEN


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"deep_nprobe": 0}, "deep_nprobe"),
        ({"deep_nprobe": 2.5}, "deep_nprobe"),
        ({"deep_below": 0}, "deep_below"),
        ({"deep_below": 1.5}, "deep_below"),
        ({"deep_below": True}, "deep_below"),
        ({"deep_below": "0.9"}, "deep_below"),
    ],
)
def test_invalid_deep_settings_are_config_errors(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        BackgroundIVFIndex(DIM, **kwargs)
