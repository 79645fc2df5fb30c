"""reporting.py: log-axis labels that stay readable however wide the range."""

import pytest

from squeezenet_jax import reporting

# The minor ticks of a log axis from 200 kB to 90 MB.
TICKS = [m * 10**e for e in (5, 6, 7) for m in range(2, 10)]


@pytest.mark.parametrize('decades, expected', [
    (0.8, TICKS),  # a narrow range may hold no major tick: every minor one is labelled
    (3.0, [2e5, 5e5, 2e6, 5e6, 2e7, 5e7]),  # wider: 2x and 5x only
    (5.0, []),  # wider still: the majors alone
])
def test_minor_log_ticks_thin_out_as_the_range_widens(decades, expected):
  labelled = [t for t in TICKS if reporting._minor_tick_labelled(t, decades)]  # pylint: disable=protected-access
  assert labelled == pytest.approx(expected)
