"""Running plans: isolation of native parsers, task functions, the driver over a Client, clusters, discovery."""
