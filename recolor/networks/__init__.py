"""Generators and critics, one file per paper architecture; shared blocks live in ``blocks``."""
