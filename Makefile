# ct-service tasks. `make` lists them. The virtual environment lives outside the
# clone, keyed by a hash of pyproject.toml, so TensorFlow is installed only once.

PYTHON ?= python3
CACHE ?= $(HOME)/.cache/ct-service
# keyed by the declared dependencies only, so editing tool settings reuses the environment
KEY := $(shell $(PYTHON) -c "import hashlib, json, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print(hashlib.sha256(json.dumps([p['dependencies'], p['optional-dependencies']]).encode()).hexdigest()[:12])")
VENV ?= $(CACHE)/venv-$(KEY)
BIN := $(VENV)/bin
DATA ?=
PYTEST_ARGS ?=

.PHONY: help venv bin run docs fashion-mnist test test-unit test-fast lint benchmark benchmark-environments benchmark-search benchmark-webhook benchmark-recovery benchmark-scale benchmark-docker redis postgres docker-engine docker-base test-docker clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(VENV)/.deps:
	rm -rf $(VENV) && $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q '.[dev]' && $(BIN)/pip uninstall -q -y ct-service
	touch $@

venv: $(VENV)/.deps  ## create the environment (dependencies cached; this checkout installed editable)
	PYTHONWARNINGS=ignore $(BIN)/pip install -q --no-deps -e .  # quiet: no build-backend banner

bin:  ## print the environment's bin folder (for PATH: README's quick start)
	@echo $(BIN)

docs: venv  ## build the documentation site into site/ (mkdocs build --strict; `mkdocs serve` to read it live)
	$(BIN)/python -m mkdocs build --strict

run: venv  ## run a full pipeline on LeNet, embedded (DATA=/path/to/mnist to work offline)
	$(BIN)/ct-service run projects/lenet $(if $(DATA),-P data=$(abspath $(DATA)))

redis:  ## make sure a Redis server answers on 127.0.0.1:6379 (the tests need one)
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || \
		redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
	@for i in 1 2 3 4 5 6 7 8 9 10; do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && exit 0; sleep 0.5; done; \
		echo "Redis does not answer on 127.0.0.1:6379" >&2; exit 1

postgres:  ## make sure PostgreSQL answers on 127.0.0.1:5432 (a test runs MLflow's server on it; started if installed)
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql 2>/dev/null | tail -1) main start 2>/dev/null || true
	@for i in $$(seq 1 20); do pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && exit 0; sleep 0.5; done; \
		echo "PostgreSQL does not answer on 127.0.0.1:5432 (trust auth for the role postgres)" >&2; exit 1

lint: venv  ## ruff, mypy and the import contracts (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

FASHION_MNIST := /usr/share/datasets/fashion-mnist

fashion-mnist:  ## Fashion-MNIST for the search benchmark (Debian's dataset-fashion-mnist; root)
	@test -f $(FASHION_MNIST)/t10k-images-idx3-ubyte.gz || { \
		command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] || { \
			echo "install Fashion-MNIST's four IDX files into $(FASHION_MNIST) (Debian: apt-get install dataset-fashion-mnist, as root)" >&2; exit 1; }; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist; }
	@ls $(FASHION_MNIST)/*-ubyte.gz >/dev/null

docker-engine:  ## make sure a Docker engine answers (Debian, root: installs docker.io, docker-compose, debootstrap; starts dockerd, with iptables so that internal networks are isolated)
	@command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 && \
		command -v docker-compose >/dev/null 2>&1 || (apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io docker-compose debootstrap)
	@docker info >/dev/null 2>&1 || (setsid dockerd </dev/null >/var/log/dockerd.log 2>&1 &)
	@for i in $$(seq 1 60); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done; \
		echo "the Docker engine does not answer; see /var/log/dockerd.log" >&2; exit 1

docker-base: docker-engine  ## build the base image ct-base:bookworm offline with debootstrap (no registry needed)
	@docker image inspect ct-base:bookworm >/dev/null 2>&1 || { \
		rootfs=$$(mktemp -d) && \
		mirror=$$(sed -n 's/^URIs: //p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1) && \
		debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
			bookworm $$rootfs $${mirror:-http://deb.debian.org/debian} >/dev/null && \
		tar -C $$rootfs -c . | docker import - ct-base:bookworm && rm -rf $$rootfs; }

test: venv redis postgres lint docker-base fashion-mnist  ## lint, then every test: real Redis, Celery, MLflow, TensorFlow, Docker
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: venv  ## pure-logic tests only (under a minute; no Redis needed)
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

test-fast: venv redis postgres fashion-mnist  ## unit + integration: everything that trains nothing and needs no Docker
	$(BIN)/python -m pytest -m "unit or integration" $(PYTEST_ARGS)

test-docker: venv redis docker-base  ## only the Docker tests (real engine)
	$(BIN)/python -m pytest -m docker $(PYTEST_ARGS)

benchmark: venv  ## measure the pipeline's overhead over a direct training run
	$(BIN)/python benchmarks/overhead.py --data $(abspath $(or $(DATA),../shared/data/mnist))

benchmark-docker: venv docker-base  ## the same, plus the pipeline in Docker and the first image build
	PATH=$(BIN):$$PATH $(BIN)/python benchmarks/overhead.py --docker --base-image ct-base:bookworm \
		--data $(abspath $(or $(DATA),../shared/data/mnist))

benchmark-environments: venv docker-base  ## both reference projects: first pipeline (environment built) and second (cached), local and Docker
	PATH=$(BIN):$$PATH $(BIN)/python benchmarks/environments.py --base-image ct-base:bookworm \
		--data $(abspath $(or $(DATA),../shared/data/mnist))

benchmark-search: venv fashion-mnist  ## compute to target: ct's policy against the old rule, random, TPE, TPE+Hyperband
	$(BIN)/python benchmarks/search.py --mnist $(abspath $(or $(DATA),../shared/data/mnist))

benchmark-webhook: venv redis  ## signed deliveries/s and latency of the webhook beside bare Flask
	$(BIN)/python benchmarks/webhook.py

benchmark-recovery: venv  ## kill workers mid-epoch: time until training runs again, epochs lost
	PATH=$(BIN):$$PATH $(BIN)/python benchmarks/recovery.py --data $(abspath $(or $(DATA),../shared/data/mnist))

benchmark-scale: venv redis postgres  ## pipelines/h against workers, wall time to target against parallel attempts, push -> first epoch
	PATH=$(BIN):$$PATH $(BIN)/python benchmarks/scale.py

clean:  ## remove the embedded store in this folder
	rm -rf .ct-service
