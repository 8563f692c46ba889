"""The shipped default network keeps the cracks the experiment is about.

A small synthetic heating experiment (6 scans of 64³, known crack fractions 0–4.8 %) is
reconstructed with ``method: rrdb`` (the shipped model on modified MLEM) and analysed; the
crack volume fraction must follow the truth. Measured (points MAE): the shipped stage-16 model
0.098 (bench/crack_gate.py DIR default --scans 6; 0.090 with the envelope of session 25); stage 13b 0.120; stage 9 0.110; stage 6 0.165; stage 4 0.13; stage 2 0.23; the unshipped stages 3 and 3b (a faint medium that also filled the
phantoms' cracks, jobs/train-mlem-matrix.yaml, train-mlem-medium.yaml) 1.82 and 1.29 — they
grey thin cracks, and this test is the gate that kept them out.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hpc.cli import main

#: mean absolute error of the crack volume fraction, percentage points (the issue's target 0.5)
MAX_MAE_PP = 0.5


def test_shipped_rrdb_keeps_the_crack_fraction(tmp_path):
    exp = tmp_path / "exp"
    assert main(["simulate-experiment", str(exp), "--scans", "6", "--method", "rrdb", "--quiet"]) == 0
    assert main(["run", str(exp / "experiment.yaml"), "--no-progress"]) == 0
    truth = pd.read_csv(exp / "truth" / "crack_fraction.csv")
    table = pd.read_csv(exp / "analysis" / "crack_table.csv")
    assert list(table["scan_index"]) == list(truth["scan_index"]) == list(range(6))
    assert (table["status"] == "ok").all()
    err = (table["crack_fraction"] - truth["crack_fraction"]).to_numpy() * 100
    assert np.abs(err).mean() < MAX_MAE_PP, err
    assert table["crack_fraction"].iloc[3] > 0.03  # the most cracked scan (truth 4.8 %) is seen cracked
