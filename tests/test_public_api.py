"""The public face: one sorted `__all__`, everything in it importable, types shipped."""

from __future__ import annotations

from pathlib import Path

import extractor


def test_all_is_sorted_and_complete():
    assert extractor.__all__ == sorted(extractor.__all__, key=lambda n: (not n.isupper(), n))
    for name in extractor.__all__:
        assert hasattr(extractor, name), name


def test_errors_share_one_root():
    for name in extractor.__all__:
        value = getattr(extractor, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, extractor.ExtractorError), name


def test_package_ships_type_information():
    assert (Path(extractor.__file__).parent / "py.typed").exists()
