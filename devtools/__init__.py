"""What the tests, the benchmarks and the demo share and production does not need: child
processes, a Redis database number of one's own, and a fake Zalo."""
