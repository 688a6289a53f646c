"""pipeline.engine.pages: numpy's huge-page advice off for an allocation, ours after it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from pipeline.engine import pages


def test_without_advice_turns_numpys_switch_off_and_back_even_on_an_error() -> None:
    switch = pages._switch()
    if switch is None:
        pytest.skip("this numpy has no huge-page switch")
    before = switch(True)
    try:
        with pytest.raises(RuntimeError), pages.without_advice():
            assert switch(False) is False  # it was off inside (switch returns the old value)
            raise RuntimeError("boom")
        assert switch(True) is True  # ... and on again after
    finally:
        switch(before)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise is Linux's")
def test_advise_covers_the_whole_pages_of_large_arrays_only() -> None:
    big = np.zeros(3 * pages.MIN_BYTES // 8 + 123)
    small = np.zeros(pages.MIN_BYTES // 8 - 1)
    done = pages.advise([big, small, big[::2]])  # a strided view is skipped
    assert 0 < done <= big.nbytes and done % pages._PAGE == 0
    assert big.nbytes - done < 2 * pages._PAGE
    assert pages.advise([small]) == 0
