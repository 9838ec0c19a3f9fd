# A stand-in for the official redis image where no registry answers (the stack test):
# Debian's Redis on the offline base. compose.yaml starts it the same way.
ARG BASE_IMAGE=ct-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* && mkdir -p /data
