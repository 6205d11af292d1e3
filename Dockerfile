# The golora operator: `python -m golora` (kopf) as a non-root user.
#   docker build -t golora/operator:0.1.0 .
# The install step is the one CI runs (`pip install .`, here without the editable flag and
# without extras: the operator needs neither torch nor the dev tools).
FROM python:3.11.13-slim-bookworm AS build
WORKDIR /src
# Dependencies first, from pyproject.toml alone (empty package dirs, a blank README), so a
# source change rebuilds only the layers below.
COPY pyproject.toml ./
RUN mkdir -p operator trainer_image && touch README.md \
 && python -m venv /opt/golora \
 && /opt/golora/bin/pip install --no-cache-dir --no-compile .
COPY README.md ./
COPY operator/golora/ operator/golora/
COPY trainer_image/golora_trainer/ trainer_image/golora_trainer/
RUN /opt/golora/bin/pip install --no-cache-dir --no-compile --no-deps --force-reinstall . \
 && find /opt/golora -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11.13-slim-bookworm
COPY --from=build /opt/golora /opt/golora
ENV PATH=/opt/golora/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# 65532: the same non-root uid the worker Jobs run as; the root filesystem can be read-only
# (manifests/install/operator.yaml mounts an emptyDir at /tmp).
USER 65532:65532
# 8080: kopf's health endpoint (--liveness); 8000: Prometheus metrics (GOLORA_METRICS_PORT).
EXPOSE 8080 8000
ENTRYPOINT ["python", "-m", "golora"]
CMD ["--liveness=http://0.0.0.0:8080/healthz"]
