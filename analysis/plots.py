"""PNG figures of a crack table (matplotlib's Agg canvas; pyplot and its global state unused).

- :func:`plot_crack_vs_time` — crack volume fraction against time, the temperature program
  on a second axis (the seed paper's Fig. 5m).
- :func:`plot_crack_vs_temperature` — crack fraction against temperature, coloured by the
  heating rate (Fig. 5n).
- :func:`plot_montage` — one central slice per chosen time point, the particle envelope,
  cracks and pores outlined.
Every figure is written atomically (temporary file, then rename).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.lines import Line2D

from .table import atomic_write, clock_origin

__all__ = ["plot_crack_vs_time", "plot_crack_vs_temperature", "plot_montage"]

CRACK_COLOR = "#e41a1c"
PORE_COLOR = "#00d5ff"
ENVELOPE_COLOR = "#ffd92f"
TEMP_COLOR = "#d95f02"


def _save(fig: Figure, path: str | Path, dpi: int = 130) -> Path:
    FigureCanvasAgg(fig)
    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=dpi, bbox_inches="tight"))


def _left_out_note(rows: pd.DataFrame, why: str, most: int = 4) -> str:
    """'not shown: N scan(s) WHY (a, b, c, …; see the status column)' for the table ``rows``."""
    ids = [str(i) for i in (rows["scan_id"] if "scan_id" in rows else rows["scan_index"])]
    named = ", ".join(ids[:most]) + (", …" if len(ids) > most else "")
    return f"not shown: {len(ids)} scan(s) {why} ({named}; see the status column)"


def _time_unit(seconds: np.ndarray) -> tuple[float, str]:
    """(seconds per unit, axis label) suited to the span of ``seconds``."""
    finite = seconds[np.isfinite(seconds)]
    span = float(finite.max() - finite.min()) if finite.size else 0.0
    if span > 2 * 3600:
        return 3600.0, "time (h)"
    if span > 300:
        return 60.0, "time (min)"
    return 1.0, "time (s)"


def plot_crack_vs_time(table: pd.DataFrame, path: str | Path, log: pd.DataFrame | None = None,
                       title: str | None = None, timezone: str | None = None) -> Path:
    """Crack (and pore) volume fraction in % against mid-scan time (against the scan index
    when no scan has a time); temperature on the right axis — the log's full curve when
    ``log`` (time_s, temperature_C) is given, else the scans' temperatures. Scans whose
    status is not ``ok`` are marked with grey crosses. The axis counts from the first scan's
    start, said as a date on ``timezone``'s clock (an experiment's ``timezone``; None: UTC)."""
    fig = Figure(figsize=(8, 4.2))
    ax = fig.add_subplot(111)
    if np.isfinite(table["mid_time_s"].to_numpy(float)).any():  # lines join scans in time, not in file order
        table = table.sort_values("mid_time_s", kind="stable", na_position="last")
    t = table["mid_time_s"].to_numpy(float)
    origin, since = clock_origin(table["start_time_s"].to_numpy(float), timezone)
    timed = t[np.isfinite(t)]
    # the scans' span with a margin: an all-day log must not squeeze minutes of scans into a spike
    window = ((timed.min() - 0.05 * np.ptp(timed), timed.max() + 0.05 * np.ptp(timed))
              if timed.size > 1 and np.ptp(timed) > 0 else None)
    if log is not None and window is not None:
        lt = log["time_s"].to_numpy(float)
        inside = (lt >= window[0]) & (lt <= window[1])
        inside[1:] |= inside[:-1]  # the readings just outside, so the curve reaches the edges
        inside[:-1] |= inside[1:].copy()
        log = log[inside]
    k, xlabel = _time_unit(np.concatenate([t, log["time_s"].to_numpy(float)]) if log is not None else t)
    xlabel += (f" since {since}" if since else "") + "; scans at mid-scan"
    x = (t - origin) / k
    if not np.isfinite(t).any():  # the files recorded no times: the scans in their order
        x, xlabel = table["scan_index"].to_numpy(float), "scan (in order; the files record no times)"
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    elif not np.isfinite(t).all():  # said under the axis: inside it the note hid the temperature line (probe AG)
        xlabel += "\n" + _left_out_note(table[~np.isfinite(t)], "with no time in the table")
    if window is not None:
        ax.set_xlim((window[0] - origin) / k, (window[1] - origin) / k)
    ok = (table["status"] == "ok").to_numpy()
    cf = table["crack_fraction"].to_numpy(float) * 100
    pf = table["pore_fraction"].to_numpy(float) * 100
    # a scan that was not analysed leaves a gap in the lines, and a grey mark at its time
    ax.plot(x, np.where(ok, cf, np.nan), "o-", color="C0", ms=4, lw=1.5, label="crack volume fraction")
    if np.nanmax(np.where(ok, pf, np.nan), initial=0) > 0:
        ax.plot(x, np.where(ok, pf, np.nan), "s:", color="C2", ms=3, lw=1, alpha=0.8,
                label="pore volume fraction")
    if (~ok).any():  # a dashed line at its time and a cross at the top edge: at 0 % it read as "no cracks" (probe AG)
        for xi in x[~ok]:
            ax.axvline(xi, color="0.6", lw=0.8, ls="--", zorder=0)
        ax.plot(x[~ok], np.ones((~ok).sum()), "x", color="0.4", ms=7, mew=1.5, clip_on=False, zorder=5,
                transform=ax.get_xaxis_transform(), label="not analysed (see status)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("volume fraction of particle (%)", color="C0")
    ax.tick_params(axis="y", colors="C0")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)

    ax2 = ax.twinx()
    temp_label = "temperature"
    if log is not None:
        ax2.plot((log["time_s"].to_numpy(float) - origin) / k, log["temperature_C"], "-", color=TEMP_COLOR, lw=1.2,
                 alpha=0.9)
        temp_label = "temperature (log)"
    tc = table["temperature_C"].to_numpy(float)
    if np.isfinite(tc).any():
        ax2.plot(x, tc, "d" if log is not None else "d-", color=TEMP_COLOR, ms=3, lw=1.0)
    if log is not None or np.isfinite(tc).any():
        ax2.set_ylabel("temperature (°C)", color=TEMP_COLOR)
        ax2.tick_params(axis="y", colors=TEMP_COLOR)
    else:  # no temperatures: no empty 0-1 °C axis
        ax2.set_axis_off()

    handles, labels = ax.get_legend_handles_labels()
    if log is not None or np.isfinite(tc).any():
        handles.append(Line2D([], [], color=TEMP_COLOR, marker="d", ms=3))
        labels.append(temp_label)
    # above the axes, in one row: inside them it hid data (a crack peak early in a long series, or the
    # temperature line, which the twin axes draw over it: blind probe AB)
    ax.legend(handles, labels, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=len(handles), fontsize=8,
              frameon=False, borderaxespad=0.2, handlelength=1.6, columnspacing=1.2)
    if np.sum(ok & np.isfinite(cf)) == 1:  # one scan: its value said, no line to read it from
        i = int(np.flatnonzero(ok & np.isfinite(cf))[0])
        ax.annotate(f"{cf[i]:.2f} % (one scan)", (x[i], cf[i]), textcoords="offset points", xytext=(6, 6),
                    fontsize=9, color="C0")
        ax.set_ylim(0, 1.3 * cf[i] if cf[i] > 0 else 1.0)
    ax.set_title(title or "Crack volume fraction and temperature program", pad=20)
    return _save(fig, path)


def plot_crack_vs_temperature(table: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Crack volume fraction (%) against temperature, points coloured by the heating rate
    (°C/min; a diverging map centred on 0 when the series both heats and cools), joined in
    time order by a faint line; a bar across the temperatures each scan went through
    (``temperature_min_C`` to ``temperature_max_C``) where they span more than 0.5 °C."""
    fig = Figure(figsize=(6.8, 4.6))
    ax = fig.add_subplot(111)
    df = table[table["status"] == "ok"].sort_values(["mid_time_s", "scan_index"])
    T = df["temperature_C"].to_numpy(float)
    cf = df["crack_fraction"].to_numpy(float) * 100
    rate = df["heating_rate_C_per_min"].to_numpy(float)
    if not np.isfinite(T).any():
        ax.text(0.5, 0.5, "no temperatures: give a temperature log", ha="center", va="center",
                transform=ax.transAxes)
    else:
        ax.plot(T, cf, "-", color="0.75", lw=0.8, zorder=1)
        if {"temperature_min_C", "temperature_max_C"} <= set(df.columns):  # what each scan went through
            lo, hi = (df[c].to_numpy(float) for c in ("temperature_min_C", "temperature_max_C"))
            wide = np.isfinite(lo) & np.isfinite(hi) & (hi - lo > 0.5)
            if wide.any():
                ax.hlines(cf[wide], lo[wide], hi[wide], color="0.45", lw=1.2, zorder=1.5,
                          label="temperature during the scan")
                ax.legend(loc="upper left", fontsize=8, frameon=False)
        finite = rate[np.isfinite(rate)]
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            if lo < 0 < hi:  # symmetric about 0: a hold's -0.5 °C/min of noise is pale, not a fast cool
                m = max(-lo, hi)
                norm = Normalize(vmin=-m, vmax=m)
                cmap = "coolwarm"
            else:
                norm = Normalize(vmin=min(lo, 0.0), vmax=max(hi, 0.0) if hi > lo else lo + 1.0)
                cmap = "viridis"
            sc = ax.scatter(T, cf, c=np.where(np.isfinite(rate), rate, np.nan), cmap=cmap, norm=norm,
                            s=30, edgecolors="k", linewidths=0.4, zorder=2, plotnonfinite=True)
            cb = fig.colorbar(sc, ax=ax)
            cb.set_label("heating rate (°C/min)")
        else:
            ax.scatter(T, cf, s=30, color="C0", edgecolors="k", linewidths=0.4, zorder=2)
        ax.annotate("start", (T[0], cf[0]), textcoords="offset points", xytext=(6, 6), fontsize=8)
        ax.annotate("end", (T[-1], cf[-1]), textcoords="offset points", xytext=(6, -10), fontsize=8)
    xlabel = "temperature (°C)"
    if (left := table[(table["status"] != "ok") | ~np.isfinite(table["temperature_C"].to_numpy(float))]).size:
        xlabel += "\n" + _left_out_note(left, "not analysed or without a temperature")  # were dropped unsaid (probe AG)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("crack volume fraction (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title or "Crack volume fraction against temperature")
    return _save(fig, path)


def plot_montage(frames: Sequence[dict], path: str | Path, title: str | None = None,
                 ncols: int = 4) -> Path:
    """A grid of slices through time with the segmentation outlined.

    ``frames``: dicts with ``image`` (y, x) float, optional bool (y, x) ``envelope``,
    ``cracks``, ``pores``, and ``label`` (text under the panel). One grey scale for all
    panels (1st–99.5th percentile of every image), so contrast changes are real.
    """
    n = len(frames)
    height = 3.25 * max(1, math.ceil(n / ncols)) + 0.6
    fig = Figure(figsize=(3.0 * min(ncols, max(n, 1)), height))
    if n == 0:
        ax = fig.add_subplot(111)
        ax.text(0.5, 0.5, "no analysed time points", ha="center", va="center")
        ax.axis("off")
        return _save(fig, path)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    allv = np.concatenate([np.asarray(f["image"], float).ravel() for f in frames])
    allv = allv[np.isfinite(allv)]
    vmin, vmax = (np.percentile(allv, [1, 99.5]) if allv.size else (0, 1))
    for i, f in enumerate(frames):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(np.asarray(f["image"], float), cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        for key, color, lw in (("envelope", ENVELOPE_COLOR, 0.8), ("pores", PORE_COLOR, 0.9),
                               ("cracks", CRACK_COLOR, 0.9)):
            m = f.get(key)
            if m is not None and np.any(m) and not np.all(m):
                ax.contour(np.asarray(m, float), levels=[0.5], colors=color, linewidths=lw)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f.get("label", ""), fontsize=8)
    handles = [Line2D([], [], color=c, lw=1.5) for c in (ENVELOPE_COLOR, CRACK_COLOR, PORE_COLOR)]
    top = 1.0 - 0.6 / height
    fig.subplots_adjust(wspace=0.05, hspace=0.25, top=top, bottom=0.02, left=0.01, right=0.99)
    fig.legend(handles, ["particle envelope", "cracks (voxels below the defect threshold, and thin grey ones; "
                         "the % counts their partly dark rims too)", "pores"], loc="lower center", ncol=3,
               fontsize=9, frameon=False, bbox_to_anchor=(0.5, top))
    fig.suptitle(title or "Central slice through time", y=1.0 - 0.05 / height, va="top", fontsize=11)
    return _save(fig, path)
