"""Local infrastructure for the demo, the tests and the benchmarks: brokers and Redis on loopback."""
