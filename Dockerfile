# One image for every Python service (exporter, webhook, worker, UI, migrations, demo simulator).
FROM python:3.11.11-slim-bookworm
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md LICENSE ./
COPY slo_pipeline ./slo_pipeline
COPY exporter ./exporter
COPY webhook ./webhook
COPY worker ./worker
COPY streamlit_app ./streamlit_app
COPY sql ./sql
COPY rules ./rules
COPY prometheus ./prometheus
COPY alertmanager ./alertmanager
COPY slo-pipeline.yml ./
COPY examples ./examples
# Extras: `ui` (Streamlit) by default, because compose runs the UI from this image too; build
# with `--build-arg EXTRAS=` for an exporter/webhook/worker image without Streamlit.
ARG EXTRAS=ui
# Editable install: the code finds sql/ and rules/ next to the package, as in a checkout.
RUN pip install --no-cache-dir -e ".${EXTRAS:+[$EXTRAS]}"
# promtool checks SLO PromQL (`slo apply`) and every rule file before install (`rules sync`);
# a static binary, taken from the Prometheus image compose runs.
COPY --from=prom/prometheus:v2.42.0 /bin/promtool /usr/local/bin/promtool
# Named volumes are created with the mount point's owner: make the writable ones nobody's.
RUN mkdir -p /lake /mlartifacts /tmp/webhook-metrics /slo-rules \
    && chown nobody /lake /mlartifacts /tmp/webhook-metrics /slo-rules
USER nobody
ENTRYPOINT ["slo-pipeline"]
