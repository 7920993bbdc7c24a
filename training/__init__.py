"""Training, evaluation (fraud metrics), registration and promotion against MLflow.

Entry points: ``training.run`` (the stage: train -> evaluate -> gate -> register -> promote),
``training.promote``, ``training.rollback``, ``training.show``. Serving and monitoring use
the model contract in the floor, ``fraudops.bundle`` (``load_registered_bundle``, ``load_bundle``,
``load_reference_sample``).
"""
