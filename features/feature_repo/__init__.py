"""The Feast feature repo: feature_store.yaml (infrastructure) + declarative definitions.

``features.store.apply_definitions`` registers these objects; ``feast apply`` run in this
folder registers the same ones.
"""
