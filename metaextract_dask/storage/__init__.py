"""Where files live: local paths, and fsspec URLs (s3://, https://, zip://...) read through byte ranges."""
