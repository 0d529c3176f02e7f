# syntax=docker/dockerfile:1
# The Catcher worker and CLI image, built as SQuaRE's services are: a pinned base brought up
# to date, the locked dependencies (requirements/main.txt, with hashes) in a virtualenv,
# then Catcher's own wheel without dependencies, on a runtime image that runs as uid 1000.
# Plotting (matplotlib, `catcher backtest --plot`) is left out: pip install 'catcher[plot]'
# where plots are made.

FROM python:3.11.14-slim-bookworm AS base-image
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get -y upgrade

FROM base-image AS dependencies-image
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements/main.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --require-hashes --no-deps -r /tmp/requirements.txt

FROM dependencies-image AS install-image
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY catcher ./catcher
COPY flux ./flux
COPY avro_schemas ./avro_schemas
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /wheels . \
    && pip install --no-deps /wheels/catcher-*.whl

FROM base-image AS runtime-image
COPY --from=install-image /opt/venv /opt/venv
RUN useradd --create-home --uid 1000 catcher
USER 1000
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CATCHER_RULES_PATH=/etc/catcher/rules
# The API and probes; /metrics alone on 9090 (CATCHER_METRICS_PORT, as the chart sets).
EXPOSE 8080 9090
ENTRYPOINT ["catcher"]
CMD ["worker"]
