"""Commands shipped beside the worker: the traffic generator (the compose stack's `traffic` service) and
`python -m streams.tools.layout` (which key layouts Redis holds; removing an old one)."""
