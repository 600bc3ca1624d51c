"""Ansible's linear strategy run through Mitogen (the `mitogen` package pinned in
requirements-dev.txt), found here because ansible.cfg names this directory.

Mitogen keeps one Python interpreter per host for the whole run and sends each module's
imports once, where Ansible starts a fresh interpreter per task and compiles its module_utils
each time (about 0.45 CPU-s a task; docs/conventions.md, "What a task costs"). Hosts whose
connection Mitogen does not take over (ansible.builtin.local for the controller, see
inventories/*/host_vars/localhost.yml) run as under the plain linear strategy.
`ANSIBLE_STRATEGY=linear` turns it off for one run."""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401
