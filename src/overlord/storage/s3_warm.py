"""Imported by the local runner's fork server when S3 storage is configured: loads boto3 and S3's
service models once, so a peon's S3 clients cost milliseconds (about 2 s each, cold, on a busy machine)."""

import contextlib

from overlord.storage.s3 import warm_up

with contextlib.suppress(Exception):  # boto3 missing: the peon reports it when it makes its client
    warm_up()
