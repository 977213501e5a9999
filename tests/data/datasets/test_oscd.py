"""OSCDDataset on the real 14 labelled cities: RGB PNGs and the 13-band GeoTIFFs."""

from __future__ import annotations

import numpy as np
import pytest

from changeseg.data.datasets.oscd import BAND_ORDER, OSCDDataset
from changeseg.errors import InputError
from tests.conftest import require_real_data

SIZES = {"bercy": (395, 360), "paris": (408, 390), "rennes": (339, 563), "beirut": (1180, 1070)}


def test_rgb_cities():
    data = OSCDDataset(require_real_data("oscd"))
    assert len(data) == 14 and data.names[:2] == ["abudhabi", "aguasclaras"]
    for city in ("bercy", "paris"):
        sample = data[data.index_of(city)]
        assert (
            sample["reference"].shape == (*SIZES[city], 3) and sample["reference"].dtype == np.uint8
        )
        assert sample["comparison"].shape == (*SIZES[city], 3)
        assert set(np.unique(sample["mask"])) == {0, 1}
        assert sample["mask"].mean() < 0.05  # urban change is rare
    assert len(OSCDDataset(require_real_data("oscd"), split="train")) == 14
    with pytest.raises(InputError, match="no cities left"):
        OSCDDataset(require_real_data("oscd"), split="test")  # the test cities are not here


def test_all_bands_resampled_to_the_10m_grid():
    root = require_real_data("oscd")
    data = OSCDDataset(root, bands="all")
    assert data.names == ["bercy", "paris", "rennes"]
    rgb = OSCDDataset(root, cities=data.names)
    for index, city in enumerate(data.names):
        sample = data[index]
        assert sample["reference"].shape == (*SIZES[city], 13)
        assert sample["reference"].dtype == np.uint16 and sample["comparison"].dtype == np.uint16
        assert sample["comparison"].shape == (*SIZES[city], 13)
        # every band has data, including the up-sampled 60 m ones (B01, B09, B10)
        assert (sample["reference"].reshape(-1, 13).max(axis=0) > 0).all()
        # the <city>-cm.tif (1/2) and cm.png (0/255) labels agree exactly
        np.testing.assert_array_equal(sample["mask"], rgb[index]["mask"])
    assert data[0]["mask"].sum() == 1046  # bercy


def test_band_subset_and_errors():
    root = require_real_data("oscd")
    four = OSCDDataset(root, bands=["B04", "B03", "B02", "B08"], cities=["paris"])
    sample = four[0]
    assert sample["reference"].shape == (408, 390, 4)
    full = OSCDDataset(root, bands="all", cities=["paris"])[0]
    np.testing.assert_array_equal(
        sample["reference"][:, :, 0], full["reference"][:, :, BAND_ORDER.index("B04")]
    )
    with pytest.raises(InputError, match="no band GeoTIFFs"):
        OSCDDataset(root, bands="all", cities=["pisa"])
    with pytest.raises(InputError, match="bands"):
        OSCDDataset(root, bands="B99")
    with pytest.raises(InputError, match="nowhere"):
        OSCDDataset(root, cities=["nowhere"])
