"""The HTTP side: /metrics, /health, /ready and the status page, all rendered from one `View` per request."""
