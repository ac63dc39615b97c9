"""Slipway: GitOps deployments for GitHub, with a durable webhook inbox and a deployment record."""

__version__ = "0.1.0"
