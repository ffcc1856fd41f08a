"""Running plans: batch tasks, the one run loop and its executors, the seed's extractors, clusters, the walk."""
