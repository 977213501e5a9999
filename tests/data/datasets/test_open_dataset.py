"""open_dataset("FORMAT:PATH") dispatch and its errors."""

from __future__ import annotations

import pytest

from changeseg.data.datasets import FORMATS, PCDDataset, open_dataset, parse_spec
from changeseg.errors import InputError
from tests.conftest import require_real_data


def test_formats_table():
    assert set(FORMATS) == {
        "folder",
        "pcd",
        "vl_cmu_cd",
        "changesim",
        "deeppcb",
        "oscd",
        "airchange",
        "sbi2015",
    }


def test_open_real_sets():
    tsunami = require_real_data("tsunami")
    data = open_dataset(f"pcd:{tsunami}", split="test", fold=1)
    assert isinstance(data, PCDDataset) and data.names == ["00000002"]
    levir = open_dataset(f"folder:{require_real_data('levir_samples')}", split="val")
    assert levir.names == ["val_27_0000_0256"]


def test_spec_errors(tmp_path):
    assert parse_spec("folder:C:/data") == ("folder", "C:/data")
    with pytest.raises(InputError, match="unknown format 'levir'.*known formats: folder, pcd"):
        open_dataset(f"levir:{tmp_path}")
    with pytest.raises(InputError, match="FORMAT:PATH"):
        open_dataset(str(tmp_path))
    with pytest.raises(InputError, match="no option bands; its options: split, fold, invert_mask"):
        open_dataset(f"pcd:{tmp_path}", bands="all")
