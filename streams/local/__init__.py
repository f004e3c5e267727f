"""The harness of the demo, the tests and the benchmarks, not shipped in the wheel: brokers, Redis and
Prometheus on loopback, sidecar processes, workloads with their truth, and record batches built in memory."""
