"""Engines of the operator tools: ``load`` (load test), ``watch`` (reconnecting client) and
``monitor`` (live view of the server process and its connections).

The command modules in :mod:`lokin_doctor.commands` parse options and import these lazily, so the
CLI start-up stays light.
"""
