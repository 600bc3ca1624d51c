# The two commands a new user needs are `make up` and `make test`; the rest are parts of them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_ROLES_PATH := $(CURDIR)/roles
export ANSIBLE_FORCE_COLOR := $(if $(CI),0,1)
# The Docker modules' API timeout (default 60 s): removing a systemd container can take
# longer while the machine is busy, which failed Molecule's destroy step in CI.
export DOCKER_TIMEOUT := 300
# The Molecule scenario CI runs (`make test`): the whole stack (molecule/stack), whose tests
# also cover each tier (the data tier, the monitoring host, the baseline) on the staging
# hosts. `make test-matrix` runs the scenarios listed here on each Debian release.
SCENARIOS := stack
# Roles whose own scenario (roles/<name>/molecule/default) CI runs too: none. The role
# scenarios (varnish, uwsgi, haproxy, graphite, bugsink, collectd, rsyslog) check what the
# stack scenario already covers (Varnish's on the staging accelerator, in
# molecule/stack/tests/test_varnish_host.py and test_web_tier.py), plus edge cases;
# `make test-roles` runs them all. A role listed here would get a `role-<name>` stage.
ROLE_SCENARIOS :=
STAGE := scripts/stage
# Unit tests of the scripts roles install (the alert evaluator, collectd's exec plugin) and
# of the load test's report and max-load search, of the fault drills' report.
ROLE_UNIT_TESTS := $(wildcard roles/*/tests) loadtest/tests drills/tests

.PHONY: help setup up down warm checklist loadtest maxload drills site-noop deploy rollback restore deploy-unlock lint test test-matrix test-app test-vcl test-roles test-preflight $(addprefix test-,$(SCENARIOS))

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## Install Docker, the pinned tools and the base image (safe to repeat)
	@scripts/setup

up: setup ## Create the local environment's containers and run site.yml on them
	@ansible-playbook playbooks/local-env.yml
	@ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks ansible-playbook playbooks/site.yml
	@ansible-playbook playbooks/warm.yml
	@ansible-playbook playbooks/local-env.yml --tags summary

warm: ## Request the most visited pages through the balancer until they are cache hits
	@ansible-playbook playbooks/warm.yml

checklist: ## Warm the cache, then the pre-launch checklist on the local environment (reports/checklist/)
	@ansible-playbook playbooks/warm.yml
	@ansible-playbook playbooks/checklist.yml

loadtest: ## Load test of the local environment: wrk beside its baselines, Locust journeys (reports/loadtest/)
	@ansible-playbook playbooks/warm.yml
	@ansible-playbook playbooks/loadtest.yml

maxload: ## The load test plus each journey's maximum load (binary search; several minutes)
	@ansible-playbook playbooks/warm.yml
	@ansible-playbook playbooks/loadtest.yml -e loadtest_maxload=true

drills: ## Fault drills under load on the local environment, each restoring the stack (reports/drills/)
	@ansible-playbook playbooks/warm.yml
	@ansible-playbook playbooks/drills.yml

site-noop: ## Time a no-change site.yml on the local environment, for the load-test report's target
	@scripts/site-noop

down: ## Remove the local environment's containers
	@ansible-playbook playbooks/local-env.yml -e local_env_state=absent

deploy: ## Ship the working tree to the local environment, one web server at a time
	@ansible-playbook playbooks/deploy.yml $(if $(REF),-e app_ref=$(REF))

rollback: ## Put the local environment back on the previous release (or RELEASE=<id>)
	@ansible-playbook playbooks/rollback.yml $(if $(RELEASE),-e rollback_release=$(RELEASE))

restore: ## Restore the local database from the backup repository (latest, or TIME="2026-12-06 02:10:00+00")
	@ansible-playbook playbooks/restore.yml -e restore_confirm=true $(if $(TIME),-e 'restore_target_time="$(TIME)"')

deploy-unlock: ## Clear the deploy lock an interrupted deploy left behind
	@ansible-playbook playbooks/unlock.yml

lint: ## yamllint, ansible-lint (production profile) and ruff
	yamllint --strict .
	ansible-lint --profile production
	ruff check .
	ruff format --check .

test: ## Everything CI runs: lint, app tests, the stack scenario on Debian 13
	@rm -f .cache/stages.log
	@scripts/machine-speed
	@$(STAGE) setup scripts/setup
	@# The stack scenario starts first and runs beside the stages that need no container,
	@# which use the CPU its create, prepare and converge leave idle (about 7 minutes of
	@# them); its output follows theirs. A failed stage or an interrupt cancels it.
	@trap '$(STAGE) --cancel molecule-stack; exit 130' INT TERM; \
	$(STAGE) --background molecule-stack molecule test -s stack; \
	$(STAGE) lint $(MAKE) --no-print-directory lint \
	&& $(STAGE) preflight pytest -q -p no:cacheprovider tests \
	&& $(STAGE) app app/run-tests \
	&& $(STAGE) vcl varnish/run-tests \
	&& $(STAGE) scripts pytest -q -p no:cacheprovider $(ROLE_UNIT_TESTS) \
	|| { $(STAGE) --cancel molecule-stack; exit 1; }; \
	$(STAGE) --join molecule-stack
	@for r in $(ROLE_SCENARIOS); do $(STAGE) role-$$r bash -c "cd roles/$$r && molecule test" || exit 1; done
	@$(STAGE) --summary
	@scripts/machine-speed

test-matrix: ## The stack scenario on Debian 13 and on Debian 12
	@rm -f .cache/stages.log
	@HPD_IMAGES="13 12" $(STAGE) setup scripts/setup
	@for d in 13 12; do for s in $(SCENARIOS); do \
		HPD_DEBIAN=$$d $(STAGE) molecule-$$s-debian$$d molecule test -s $$s || exit 1; done; done
	@$(STAGE) --summary

test-app: ## The chat app's tests against real PostgreSQL, Redis and Memcached
	app/run-tests

test-preflight: ## preflight.yml on the production example and on broken copies of it
	pytest -q -p no:cacheprovider tests

test-vcl: ## The varnishtest suite of the VCL
	varnish/run-tests

test-roles: ## Every role's own scenario (roles/*/molecule/default)
	@for r in $$(ls -d roles/*/molecule/default | cut -d/ -f2); do \
		(cd roles/$$r && molecule test) || exit 1; done

$(addprefix test-,$(SCENARIOS)): test-%: ## One scenario (make test-stack)
	molecule test -s $*
