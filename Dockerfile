# EcoMind Streams sidecar image: `faust -A streams worker`, settings from the environment.
# Stage `build` fetches every runtime dependency as a wheel checked against requirements/runtime.txt's
# hashes and builds the project's own wheel; stage `runtime` installs exactly those wheels, offline and
# hash-checked again, and keeps no compiler, pip cache or packaging tool (docs/supply-chain.md).
# Needs BuildKit (the default builder of Docker 23+ and of `docker compose`) for the RUN --mount below.
#
# The base is pinned to a Debian release (13, trixie: the stable one, with regular security support)
# and a Python minor; to pin it by digest too, pass
#   --build-arg BASE_IMAGE=python:3.11-slim-trixie@sha256:<digest>
# Label the image with where it came from:
#   --build-arg SOURCE=<repository URL> --build-arg REVISION=$(git rev-parse HEAD)
# Optional features whose packages the default image leaves out, each installed from its own lock
# (requirements/<extra>.txt: the runtime lock plus the extra, same hashes):
#   --build-arg EXTRAS=msk-iam    Amazon MSK IAM authentication (KAFKA_SASL_MECHANISM=AWS_MSK_IAM)
ARG BASE_IMAGE=python:3.11-slim-trixie

FROM ${BASE_IMAGE} AS build
ARG EXTRAS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY requirements/build.txt requirements/compile.txt requirements/runtime.txt requirements/msk-iam.txt requirements/
# Every locked runtime dependency has a CPython 3.11 manylinux wheel (or a pure-Python one), and
# --only-binary keeps it so: no dependency is compiled. The lock the image is made of goes to /wheels
# with the wheels, for the runtime stage to install from. compile.txt brings mypy, whose mypyc compiles
# the project's hot path (core/compiled.py) into its wheel with this stage's gcc; the runtime stage gets
# the wheel and no compiler.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN case "${EXTRAS}" in \
      "") lock=requirements/runtime.txt ;; \
      msk-iam) lock=requirements/msk-iam.txt ;; \
      *) echo "EXTRAS=${EXTRAS}: expected msk-iam or nothing" >&2; exit 1 ;; \
    esac \
 && python -m pip install --require-hashes --only-binary=:all: -r requirements/build.txt -r requirements/compile.txt \
 && python -m pip download --require-hashes --only-binary=:all: --dest /wheels/deps -r "$lock" \
 && cp "$lock" /wheels/requirements.txt
COPY pyproject.toml setup.py README.md LICENSE ./
COPY core ./core
COPY streams ./streams
COPY agents ./agents
COPY tables ./tables
RUN ECOMIND_STREAMS_COMPILE=1 python -m pip wheel --no-deps --no-build-isolation --wheel-dir /wheels/project . \
 && python -m zipfile --list /wheels/project/*.whl | grep -q 'agents/fold\.cpython-.*\.so'

FROM ${BASE_IMAGE} AS runtime
ARG BASE_IMAGE
ARG VERSION=0.2.0
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="ecomind-streams" \
      org.opencontainers.image.description="Kafka sidecar turning EcoMind's event topics into Prometheus metrics" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
WORKDIR /app
# The wheels and the lock are bind-mounted, not copied, so no layer keeps them. pip, setuptools and
# wheel go last: the image then holds exactly the packages of the lock (the SBOM's list: runtime.txt's,
# or the extra's lock) and the project.
# The zone check fails the build unless every zone loads (Debian's tzdata in the base, with the locked
# tzdata wheel as Python's fallback), so any IANA name in STREAMS_TIMEZONE works. `core.compiled --stale`
# fails it unless the installed hot path is the compiled build of the sources beside it.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --disable-pip-version-check --no-index --find-links /wheels/deps \
      --require-hashes --only-binary=:all: -r /wheels/requirements.txt \
 && python -m pip install --no-cache-dir --disable-pip-version-check --no-index --no-deps /wheels/project/*.whl \
 && python -m core.compiled --stale \
 && python -m pip uninstall --yes --disable-pip-version-check pip setuptools wheel \
 && rm -rf /root/.cache \
 && python -c "import zoneinfo as z; n = z.available_timezones(); assert len(n) > 400, n; [z.ZoneInfo(k) for k in n]" \
 && useradd --system --uid 10001 streams
USER streams
ENV STREAMS_WEB_PORT=6066
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:6066/health', timeout=2)" || exit 1
CMD ["faust", "-A", "streams", "--datadir", "/tmp/faust", "worker", "-l", "info"]
