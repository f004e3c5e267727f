# EcoMind Streams sidecar image: `faust -A streams worker`, settings from the environment.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY agents ./agents
COPY tables ./tables
RUN pip install --no-cache-dir . && useradd --system --uid 10001 streams
USER streams
ENV STREAMS_WEB_PORT=6066
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:6066/health', timeout=2)" || exit 1
CMD ["faust", "-A", "streams", "--datadir", "/tmp/faust", "worker", "-l", "info"]
