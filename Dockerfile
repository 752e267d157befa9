# One image for every Python service (exporter, webhook, worker, UI, migrations, demo simulator).
# The package is built as a wheel and installed like any user would: SQL migrations, rules and
# default configs travel inside it as package data, so the image holds no source checkout.
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
# Extras: `ui` (Streamlit) by default, because compose runs the UI from this image too; build
# with `--build-arg EXTRAS=` for an exporter/webhook/worker image without Streamlit.
ARG EXTRAS=ui
RUN wheel="$(ls /wheels/*.whl)" && pip install --no-cache-dir "${wheel}${EXTRAS:+[$EXTRAS]}" && rm -rf /wheels
# The detectors of the demo compose; deployments mount their own over it.
COPY slo-pipeline.yml ./
# promtool checks SLO PromQL (`slo apply`) and every rule file before install (`rules sync`);
# a static binary, taken from the Prometheus image compose runs.
COPY --from=prom/prometheus:v2.42.0 /bin/promtool /usr/local/bin/promtool
# Named volumes are created with the mount point's owner: make the writable ones nobody's.
RUN mkdir -p /lake /mlartifacts /tmp/webhook-metrics /slo-rules \
    && chown nobody /lake /mlartifacts /tmp/webhook-metrics /slo-rules
USER nobody
ENTRYPOINT ["slo-pipeline"]
