# Level 1: FastAPI app with the champion baked into the image.
#
#   python -m serving.launch level1          # (or make level1) exports the champion to
#                                            # run/serving/level1-model, or in CI/KFP:
#   python -c "from fraudops.bundle import export_bundle; export_bundle('model')"
#   docker build -f serving/docker/level1.Dockerfile --build-context model=<exported dir> \
#       -t ghcr.io/OWNER/fraud-mlops-level1:<tag> .
#
# The model comes in through a named build context (`model`): .dockerignore keeps boosters
# out of the repo context, and the image pins exactly the bundle exported at build time.
#
# Dependencies come from uv.lock (--frozen, the `serve` extra): the image runs the versions
# the tests ran. Build from the repository root.

# The official image by default; `make rehearse` passes a base built from Debian packages
# (debootstrap) when no image registry can be reached.
ARG BASE_IMAGE=python:3.11.13-slim-bookworm

# Overridden by `--build-context model=<exported bundle dir>` (BuildKit: a named context
# replaces the stage of the same name) or by `--build-arg MODEL_IMAGE=<image holding
# /model.ubj and /bundle.json>` (any builder; `make rehearse` does this). On its own it is
# empty, so the COPY below fails the build instead of baking an image without a model.
ARG MODEL_IMAGE=scratch
FROM ${MODEL_IMAGE} AS model

FROM ${BASE_IMAGE}
# A fixed numeric uid, so Kubernetes `runAsNonRoot` can check it; log folders it may write.
RUN groupadd --system --gid 10001 fraud \
    && useradd --system --uid 10001 --gid fraud --no-create-home --shell /usr/sbin/nologin fraud \
    && mkdir -p /var/log/fraud/predictions /var/log/fraud/audit \
    && chown -R fraud:fraud /var/log/fraud
# The lock and the project metadata only: the dependency layer below changes when they do.
COPY pyproject.toml uv.lock /opt/lock/
# The locked dependencies, in one layer that every serving Dockerfile builds with this same
# RUN: the engine builds it once and the serving images share it. No build stage: uv comes
# in, installs and leaves within the RUN (a venv built in another stage would be copied and
# committed a second time, minutes per image on a cold cache). UV_NATIVE_TLS: uv trusts the
# base's CA store (as pip does), so a CA added there counts. Left out, to keep the image
# under 1.5 GB: XGBoost's multi-GPU NCCL (0.5 GB; these servers score on the CPU), mypy (a
# type-checker plugin SQLAlchemy lists for Feast) and the packages' own test suites.
RUN pip install --no-cache-dir --disable-pip-version-check --target /tmp/uv uv==0.13.9 \
    && UV_PROJECT_ENVIRONMENT=/opt/venv UV_COMPILE_BYTECODE=1 UV_PYTHON_DOWNLOADS=never \
       UV_NATIVE_TLS=1 /tmp/uv/bin/uv sync --project /opt/lock --frozen --no-dev \
       --no-install-project --no-cache --extra serve \
       --no-install-package nvidia-nccl-cu12 --no-install-package mypy \
    && find /opt/venv/lib/python3.11/site-packages -type d -name tests -prune -exec rm -rf {} + \
    && rm -rf /tmp/uv
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
# The exported bundle (model.ubj + bundle.json, with its registry version) baked in.
COPY --from=model --chown=10001:10001 model.ubj bundle.json /models/fraud-detector/
ENV FRAUD_MODEL_DIR=/models/fraud-detector
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "serving.level1"]
