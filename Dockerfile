# One image for every role: the code server (the default command), dagster-daemon,
# dagster-webserver and the run workers Dagster's Docker or Kubernetes launcher starts.
# Build it with `make image`: the project and its dependencies are installed from wheels that
# `make image` builds on the host from requirements.lock (build/image/), never from an index
# inside the build. Secrets come from the environment at run time; none is in the image.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Stage 1: a virtualenv with every dependency. It changes only when requirements.lock does, so
# the final stage's copy of it stays cached across code changes.
FROM ${BASE_IMAGE} AS dependencies
COPY build/image/deps/ /wheels/
RUN python3 -m venv /opt/render-assets \
    && /opt/render-assets/bin/pip install --quiet --no-cache-dir --no-index --find-links /wheels /wheels/*.whl

FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --user-group --home-dir /opt/dagster --no-create-home render
COPY --from=dependencies /opt/render-assets /opt/render-assets
ENV PATH=/opt/render-assets/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    PYTHONUNBUFFERED=1
# The project itself: a layer of about a megabyte, the only one a code change rebuilds.
COPY build/image/app/ /tmp/app/
RUN pip install --quiet --no-cache-dir --no-index --no-deps /tmp/app/*.whl && rm -rf /tmp/app
# The Docker deployment's instance (deploy/docker/dagster.yaml); Kubernetes mounts the Helm
# chart's instance ConfigMap over it. Run workers write step logs to compute_logs/ and, with
# file:// storage on one host, images to storage/ (volumes in compose.yaml, owned by the user).
COPY --chown=render:render deploy/docker/dagster.yaml /opt/dagster/dagster_home/dagster.yaml
RUN mkdir -p /opt/dagster/dagster_home/compute_logs /opt/dagster/storage && chown -R render:render /opt/dagster
WORKDIR /opt/dagster
USER render
EXPOSE 3000 4000
# Per role: the webserver answers HTTP, the code server accepts connections, a daemon or a run
# worker is healthy while it runs (render_assets/container_health.py; milliseconds, no Dagster import).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-m", "render_assets.container_health"]
CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "4000", "--module-name", "render_assets.orchestration.definitions"]
