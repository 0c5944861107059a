"""Offline helpers for the deployment tests: a Dockerfile parser and a Helm chart renderer."""
