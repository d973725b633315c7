"""What a framework callback counts as a batch's samples."""

from __future__ import annotations


def test_a_batchs_samples_are_its_first_tensors_first_dimension() -> None:
    from greenai.integrations import batch_samples

    class T:
        def __init__(self, *shape: int) -> None:
            self.shape = shape

    assert batch_samples(T(8, 3)) == 8
    assert batch_samples((T(4, 2), T(4))) == 4
    assert batch_samples({"input_ids": T(2, 128), "labels": T(2, 128)}) == 2
    assert batch_samples([]) is None
    assert batch_samples(T()) is None  # a scalar counts nothing
    assert batch_samples("text") is None
