# Catcher worker and CLI image: a wheel built from the source tree, installed in a venv.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY catcher ./catcher
COPY flux ./flux
COPY avro_schemas ./avro_schemas
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-cache-dir /wheels/catcher-*.whl

FROM python:3.11-slim-bookworm
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 1000 catcher
USER 1000
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CATCHER_RULES_PATH=/etc/catcher/rules
ENTRYPOINT ["catcher"]
CMD ["worker"]
