"""Scale-out of inference on Ray (the optional extra ``changeseg[ray]``).

- `changeseg.distributed.cluster`: connect to Ray (``local``, ``auto`` or ``HOST:PORT``), size the
  worker pool, and turn Ray's failures into one clear error.
- `changeseg.distributed.batch`: batch detection as a Ray Dataset — `detect_dataset` (a lazy
  Dataset of per-pair results, for your own pipelines) and `run_batch_ray` (the same output
  folders, summary.csv and resume rules as `changeseg.inference.batch.run_batch`). An actor pool
  keeps one loaded model per worker.
- `changeseg.distributed.raster`: one large GeoTIFF pair, its tile windows predicted by workers
  and blended and written here, identical to `changeseg.inference.geo.detect_geotiff_windowed`.
- `changeseg.distributed.storage`: outputs on a shared file system or, through pyarrow file
  systems, an object store (``s3://…``, ``gs://…``).

Nothing here imports Ray until it is used, so the package imports without the extra; every
entry point raises `changeseg.errors.InputError` naming ``pip install 'changeseg[ray]'`` when
Ray is missing.
"""
