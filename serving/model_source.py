"""Where a server's model comes from, and how it is swapped without dropping a request.

A :class:`ModelHolder` loads the bundle from a directory (the L1 baked image, KServe's
``/mnt/models``) or from the registry alias (``models:/fraud-detector@champion``), never a
version number. Requests read ``holder.bundle`` once and keep that reference, so replacing
it when the alias moves is atomic: in-flight requests finish on the old model, new ones
get the new model, nobody gets an error.

A new model -- the alias moved -- is loaded, compiled and verified by a worker process
(:mod:`serving.model_worker`), not by a thread of the server: that work holds the GIL for
hundreds of milliseconds, and a thread doing it stalls every request meanwhile. The
server only reads the prepared files back and swaps. The first model is loaded in the
process itself: nothing is served yet, and a worker would only add its start-up.

Faults: registry unreachable at start-up -> not ready, one clear log line per attempt,
retried in the background; unreachable after load -> keep serving the loaded model and
report it (``status()``, ``/readyz``, log).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fraudops.bundle import ModelBundle, load_bundle, load_registered_bundle
from fraudops.config import mlflow_tracking_uri
from fraudops.registry import ensure_reachable, mlflow_client
from serving import metrics
from serving.compiled_forest import attach_compiled, kernel_ready
from serving.model_worker import (
    PreparedModel,
    RegistrySource,
    WarmWorker,
    attach_prepared_walk,
    one_line,
)
from serving.settings import ServingSettings

logger = logging.getLogger("serving.model")


def configure_mlflow_client() -> None:
    """Fail fast instead of MLflow's minutes of HTTP retries (unless already configured)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    # A progress bar per model download is noise in a server log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def prepare_for_serving(bundle: ModelBundle) -> ModelBundle:
    """One scoring thread per booster (requests run in parallel) and a warm first call."""
    bundle.booster.set_param({"nthread": 1})
    bundle.predict_proba(np.zeros((1, len(bundle.feature_names)), dtype=np.float32))
    return bundle


class ModelHolder:
    """The bundle a server scores with: loaded once, refreshed when the alias moves."""

    def __init__(self, settings: ServingSettings, tracking_uri: str | None = None) -> None:

        self.settings = settings
        self.tracking_uri = tracking_uri or mlflow_tracking_uri()
        self.bundle: ModelBundle | None = None
        self.registry_error: str | None = None
        self.load_error: str | None = None
        self.loaded_at: str | None = None
        self.listeners: list[Callable[[ModelBundle], None]] = []
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Prepares each new version off the request path; kept warm while the alias is polled.
        self._worker = WarmWorker(self.tracking_uri)

    # -- where from ------------------------------------------------------------------------
    @property
    def uses_registry(self) -> bool:
        """True when the model comes from the registry alias (no ``FRAUD_MODEL_DIR``)."""
        return self.settings.model_dir is None

    @property
    def source(self) -> str:
        """``models:/<name>@<alias>`` or the bundle directory."""
        if self.uses_registry:
            return f"models:/{self.settings.model_name}@{self.settings.model_alias}"
        return str(self.settings.model_dir)

    @property
    def ready(self) -> bool:
        """A model is loaded (readiness of every server)."""
        return self.bundle is not None

    @property
    def model_version(self) -> str:
        """The loaded registry version ("local" for a bundle without one)."""
        if self.bundle is None:
            return "none"
        return self.bundle.model_version or "local"

    def alias_version(self) -> str:
        """The version the alias points at now (raises when the registry cannot say)."""
        ensure_reachable(self.tracking_uri, timeout_s=self.settings.load_retry_seconds)
        client, _ = mlflow_client(self.tracking_uri, check=False)
        version = client.get_model_version_by_alias(
            self.settings.model_name, self.settings.model_alias
        )
        return str(version.version)

    def _read(self) -> ModelBundle:

        if self.settings.model_dir is not None:  # not uses_registry: the directory wins
            return load_bundle(Path(self.settings.model_dir))
        ensure_reachable(self.tracking_uri, timeout_s=self.settings.load_retry_seconds)
        return load_registered_bundle(
            self.settings.model_alias, self.settings.model_name, self.tracking_uri
        )

    def _prepare_elsewhere(self) -> PreparedModel:
        """The alias's model, loaded, compiled and verified by a worker process."""
        started = time.perf_counter()
        source = RegistrySource(
            self.settings.model_name,
            self.settings.model_alias,
            self.tracking_uri,
            self.settings.compiled_trees,
        )
        prepared = self._worker.prepare(source)
        logger.info(
            "version %s prepared in a worker process in %.1fs (compiled trees: %s)",
            prepared.bundle.model_version,
            time.perf_counter() - started,
            "yes" if prepared.walk is not None else prepared.compile_error or "off",
        )
        return prepared

    # -- loading and swapping ----------------------------------------------------------------
    def _attach_scorer(self, bundle: ModelBundle, prepared: PreparedModel | None) -> bool:
        """Attach compiled trees before the swap where that is cheap; True: compile later."""

        if not self.settings.compiled_trees:
            return False
        if prepared is None:
            if kernel_ready():
                attach_compiled(bundle)  # milliseconds once the loop is compiled: before the swap
                return False
            return True
        if prepared.walk is None:
            logger.warning(
                "compiled trees not used for version %s: %s",
                bundle.model_version,
                prepared.compile_error,
            )
            return False
        if kernel_ready():
            attach_prepared_walk(bundle, prepared.walk)
            return False
        return True  # the loop itself was never compiled here: that takes a thread, once

    def _install(self, bundle: ModelBundle, prepared: PreparedModel | None = None) -> None:
        bundle = prepare_for_serving(bundle)
        compile_later = self._attach_scorer(bundle, prepared)
        self.bundle = bundle  # one reference assignment: the swap is atomic for readers
        metrics.FRAUD_COMPILED_TREES.set(int(bundle.fast_scorer is not None))
        if compile_later:
            # The first compile takes seconds: readiness does not wait, the booster scores.
            threading.Thread(
                target=self._compile, args=(bundle,), name="compile-trees", daemon=True
            ).start()
        metrics.FRAUD_REGISTRY_UP.set(1)
        self.loaded_at = datetime.now(UTC).isoformat()
        self.load_error = None
        for listener in self.listeners:
            listener(bundle)

    def _compile(self, bundle: ModelBundle) -> None:

        if attach_compiled(bundle) and bundle is self.bundle:
            metrics.FRAUD_COMPILED_TREES.set(1)

    def load(self) -> bool:
        """Try to load the model once; on failure log one clear line and stay not ready."""
        with self._load_lock:
            try:
                bundle = self._read()
                self._install(bundle)
            except Exception as exc:  # noqa: BLE001 -- any failure means "not ready": logged, retried
                self.load_error = f"{self.source}: {one_line(exc)}"
                logger.error(
                    "model not loaded from %s (registry %s): %s -- not ready, retrying every %.0fs",
                    self.source,
                    self.tracking_uri if self.uses_registry else "not used",
                    one_line(exc),
                    self.settings.load_retry_seconds,
                )
                return False
        logger.info(
            "model loaded from %s: version %s, %d features, thresholds review=%.4f decline=%.4f",
            self.source,
            self.model_version,
            len(bundle.feature_names),
            bundle.thresholds.review,
            bundle.thresholds.decline,
        )
        return True

    def refresh(self) -> bool:
        """Check the alias; load and swap in the model it now names. True if it changed.

        A registry that cannot be reached (or an alias that vanished) leaves the loaded
        model serving; the problem is logged and kept in ``registry_error``.
        """
        if not self.uses_registry:
            return False
        if self.bundle is None:
            return self.load()
        with self._load_lock:
            try:
                version = self.alias_version()
                if version == self.bundle.model_version:
                    self._registry_ok()
                    return False
                prepared = self._prepare_elsewhere()
            except Exception as exc:  # noqa: BLE001 -- once loaded, the registry is optional
                message = f"registry {self.tracking_uri}: {one_line(exc)}"
                if message != self.registry_error:
                    logger.warning("%s; still serving version %s", message, self.model_version)
                self.registry_error = message
                metrics.FRAUD_REGISTRY_UP.set(0)
                return False
            previous = self.model_version
            self._install(prepared.bundle, prepared)
            self._registry_ok()
        logger.info("alias %s moved: version %s -> %s", self.source, previous, self.model_version)
        return True

    def _registry_ok(self) -> None:
        if self.registry_error is not None:
            logger.info("registry %s reachable again", self.tracking_uri)
        self.registry_error = None
        metrics.FRAUD_REGISTRY_UP.set(1)

    def _run(self) -> None:
        while not self.ready and not self._stop.is_set():
            if self.load():
                break
            self._stop.wait(self.settings.load_retry_seconds)
        interval = self.settings.reload_interval_seconds
        if not self.uses_registry or interval <= 0:
            return
        # Warm now, while nothing is swapping: a swap then costs the worker only the model.
        self._worker.start()
        while not self._stop.wait(interval):
            self.refresh()

    def require_bundle_dir(self, storage_uri: str | None) -> None:
        """With a model folder (KServe's /mnt/models), load it now or stop the start-up.

        A folder never fills up later: retrying would only serve "not ready" forever, and
        the cause is the URI the storage initializer was given. SystemExit names both.
        """
        if self.uses_registry or self.load():
            return
        raise SystemExit(
            f"error: no model in {self.settings.model_dir} "
            f"(STORAGE_URI={storage_uri or 'not set'}): {self.load_error}"
        )

    def start(self, load_now: bool = True) -> None:
        """Load now (if asked) and keep loading / polling the alias in a daemon thread."""
        if load_now and not self.ready:
            self.load()
        self._thread = threading.Thread(target=self._run, name="model-holder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread and the worker process."""
        self._stop.set()
        self._worker.close()

    def status(self) -> dict[str, Any]:
        """What is served and how the registry looks (readiness bodies, /reload answers)."""
        status: dict[str, Any] = {
            "ready": self.ready,
            "model_name": self.settings.model_name,
            "source": self.source,
            "model_version": self.model_version,
            "loaded_at": self.loaded_at,
            "compiled_trees": self.bundle is not None and self.bundle.fast_scorer is not None,
        }
        if self.uses_registry:
            status["alias"] = self.settings.model_alias
            status["registry"] = "ok" if self.registry_error is None else "unreachable"
            if self.registry_error:
                status["registry_error"] = self.registry_error
        if self.load_error and not self.ready:
            status["load_error"] = self.load_error
        return status
