"""A file's plan (which chunks, which shape) and the plan as a plain Dask task dictionary."""
