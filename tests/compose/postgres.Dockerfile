# A stand-in for the official postgres image where no registry answers (the stack test):
# Debian's PostgreSQL on the offline base, with an entry point that honours the same
# POSTGRES_USER, POSTGRES_DB and POSTGRES_PASSWORD_FILE on first start.
ARG BASE_IMAGE=ct-base:bookworm
FROM ${BASE_IMAGE}
# (without the cluster Debian's package makes: the entry point makes its own)
RUN apt-get update && apt-get install -y --no-install-recommends postgresql \
    && rm -rf /var/lib/apt/lists/* /etc/postgresql /var/lib/postgresql/*
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data
ENTRYPOINT ["sh", "/usr/local/bin/postgres-entrypoint.sh"]
