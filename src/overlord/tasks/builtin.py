"""Imported by fork servers before their first fork: every built-in task type's code, so a peon
starts with its task's modules already imported (``import overlord.tasks`` alone imports none)."""

from overlord.tasks import import_all

import_all()
