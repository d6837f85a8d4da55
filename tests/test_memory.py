"""The peak-memory figure that training and the benchmark print is this process's high-water mark, in MiB."""

import sys
from pathlib import Path

import pytest

from huse_edge.memory import peak_rss_mb


def _high_water_mark_mb() -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the kernel's VmHWM from /proc (Linux only)")
def test_peak_rss_is_the_kernels_high_water_mark_in_mib():
    # the same counter, up to the kernel's per-task RSS accounting (a few pages); a wrong unit is off 1024x
    low = _high_water_mark_mb()
    peak = peak_rss_mb()
    assert 0.98 * low - 2 <= peak <= 1.02 * _high_water_mark_mb() + 2
