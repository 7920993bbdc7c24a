# Level 2: FastAPI app loading models:/fraud-detector@champion from MLflow.
#
#   docker build -f serving/docker/level2.Dockerfile -t ghcr.io/OWNER/fraud-mlops-level2:<tag> .
#
# Configure with MLFLOW_TRACKING_URI (+ S3 credentials for artifacts), FRAUD_MODEL_ALIAS,
# FRAUD_RELOAD_INTERVAL_SECONDS and the Feast repo (FRAUD_FEAST_REPO, FRAUD_ONLINE_STORE).
#
# Dependencies come from uv.lock (--frozen, the `serve` extra): the image runs the versions
# the tests ran. Build from the repository root.

# The official image by default; `make rehearse` passes a base built from Debian packages
# (debootstrap) when no image registry can be reached. Both must be the same in both stages.
ARG BASE_IMAGE=python:3.11.13-slim-bookworm

FROM ${BASE_IMAGE} AS build
# UV_NATIVE_TLS: uv trusts the base's CA store (as pip does), so a CA added there counts.
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_NATIVE_TLS=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# The lock and the project metadata only: this layer changes when dependencies do.
# Left out, to keep the image under 1.5 GB: XGBoost's multi-GPU NCCL (0.5 GB; these servers
# score on the CPU), mypy (a type-checker plugin SQLAlchemy lists for Feast) and the
# packages' own test suites.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --no-cache --extra serve \
        --no-install-package nvidia-nccl-cu12 --no-install-package mypy \
    && find /opt/venv/lib/python3.11/site-packages -type d -name tests -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
# A fixed numeric uid, so Kubernetes `runAsNonRoot` can check it; log folders it may write.
RUN groupadd --system --gid 10001 fraud \
    && useradd --system --uid 10001 --gid fraud --no-create-home --shell /usr/sbin/nologin fraud \
    && mkdir -p /var/log/fraud/predictions /var/log/fraud/audit \
    && chown -R fraud:fraud /var/log/fraud
# Same base image in both stages, so the venv's python symlink resolves here too.
COPY --from=build /opt/venv /opt/venv
# NUMBA_CACHE_DIR: compiled trees are cached on /tmp, writable under a read-only root.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/tmp/numba \
    FRAUD_PREDICTION_LOG_DIR=/var/log/fraud/predictions \
    FRAUD_AUDIT_LOG_DIR=/var/log/fraud/audit
WORKDIR /app
# The packages the server imports; no data, no tracking state, no tests.
COPY fraudops/ fraudops/
COPY data/*.py data/
COPY features/ features/
COPY training/ training/
COPY serving/ serving/
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "serving.level2"]
