"""Crack analysis of an in-situ heating experiment: it reads only the stored volumes and tables.

- :mod:`analysis.segment` — ``segment_volume(volume, SegmentationParams)``: particle envelope,
  cracks and pores of one (z, y, x) volume, blockwise along z (memory-bounded).
- :mod:`analysis.store` — ``open_store(path)``: checks an experiment store, reads it one time
  point (and one slab) at a time.
- :mod:`analysis.table` — temperature log join (``time_s``, ``temperature_C``), the crack
  table (CSV + Parquet).
- :mod:`analysis.plots` — PNG figures: crack fraction vs time (temperature on a second axis),
  vs temperature (coloured by heating rate), a slice montage through time.
- :mod:`analysis.run` — ``analyze_time_point(store, t, params)`` (pure, for Dask/MPI workers)
  and ``analyze_store(store, temperature_csv, out_dir, params, executor, map_fn)``.
"""
