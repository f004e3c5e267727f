"""Benchmarks of EcoMind Streams against the raw consumer, a naive Faust app and Quix Streams."""
