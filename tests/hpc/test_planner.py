"""Work units: exact counts, chunk alignment, names."""
from __future__ import annotations

import pytest

from hpc.planner import WorkUnit, plan_units, row_ranges
from recon.errors import FlytomoError


@pytest.mark.parametrize("n_scans, n_rows, rpc, per_scan", [(5, 50, 16, 4), (3, 64, 16, 4), (2, 7, 16, 1),
                                                             (1, 1, 1, 1), (4, 33, 8, 5)])
def test_unit_counts(n_scans, n_rows, rpc, per_scan):
    units = plan_units(n_scans, n_rows, rpc)
    assert len(units) == n_scans * per_scan
    assert len({u.name for u in units}) == len(units)
    for t in range(n_scans):
        rows = [u for u in units if u.t == t]
        assert rows[0].z0 == 0 and rows[-1].z1 == n_rows
        assert all(a.z1 == b.z0 for a, b in zip(rows, rows[1:]))
        assert all(u.z0 % rpc == 0 and u.rows <= rpc for u in rows)


def test_subset_and_names():
    units = plan_units(10, 20, 16, scans=[7, 2, 2])
    assert [(u.t, u.z0, u.z1) for u in units] == [(2, 0, 16), (2, 16, 20), (7, 0, 16), (7, 16, 20)]
    assert WorkUnit(3, 16, 32).name == "t00003_z00016"


def test_bad_plan():
    with pytest.raises(FlytomoError):
        row_ranges(0, 16)
    with pytest.raises(FlytomoError):
        row_ranges(10, 0)
