"""Rate control (codecs/_rate.py): the bisection, the stopping threshold for a target, the
dictionary sizes tried for a budget."""

import numpy as np

from semzip.codecs._rate import bisect, dictionary_sizes, reached_cos, stop_counts, stopping_threshold


def test_bisect_brackets_the_switch_of_a_monotone_predicate():
    lo, hi = bisect(lambda x: x >= 0.3, 0.0, 1.0, 20)
    assert lo < 0.3 <= hi and hi - lo == 2.0**-20


def _cos():
    """Three items' cosines after each of four pursuit steps (non-decreasing per item)."""
    return np.array([[0.5, 0.7, 0.8, 0.9], [0.2, 0.4, 0.6, 0.95], [0.85, 0.86, 0.9, 0.99]])


def test_items_stop_at_their_first_step_reaching_the_threshold():
    cos = _cos()
    np.testing.assert_array_equal(stop_counts(cos, 0.6), [2, 3, 1])
    np.testing.assert_array_equal(stop_counts(cos, 1.0), [4, 4, 4])  # none reaches it: every step
    np.testing.assert_array_equal(reached_cos(cos, 0.6), [0.7, 0.6, 0.85])


def test_a_cosine_target_takes_the_smallest_threshold_that_reaches_it():
    cos = _cos()
    t = stopping_threshold(cos, target_cos=0.8)
    assert reached_cos(cos, t).mean() >= 0.8 > reached_cos(cos, t - 1e-3).mean()
    assert stopping_threshold(cos, target_cos=0.99) is None  # every step gives 0.947 on average
    assert stopping_threshold(cos) == 1.0  # no target: every step


def test_a_budget_takes_the_largest_threshold_that_fits():
    cos = _cos()

    def fits(t):  # one bit per kept step, 8 bits for the three items
        return int(stop_counts(cos, t).sum()) <= 8

    t = stopping_threshold(cos, fits=fits)
    assert fits(t) and not fits(t + 1e-3)
    assert stopping_threshold(cos, fits=lambda t: True) == 1.0
    assert stopping_threshold(cos, fits=lambda t: False) is None


def test_dictionary_sizes_fit_the_estimate_largest_first():
    sizes = dictionary_sizes(10_000, 20.0, lambda a: 10 + a / 100, spread=1, keep=4)
    assert sizes == sorted(sizes, reverse=True) and len(sizes) == 4
    assert all(10 + a / 100 <= 20 for a in sizes) and 10 + 1.0905 * sizes[0] / 100 > 20
    apart = dictionary_sizes(10_000, 20.0, lambda a: 10 + a / 100, spread=4, keep=3)
    assert apart[0] == sizes[0] and apart[1] < sizes[3] and len(apart) == 3
    assert dictionary_sizes(100, 1.0, lambda a: 5.0, spread=1, keep=4) == [2]  # none fits
