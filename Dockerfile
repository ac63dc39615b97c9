# Slipway: one image for every process. `docker run IMAGE serve | worker | db upgrade | redeliver …`
FROM python:3.11-slim

# The UID of the user Slipway runs as. On Linux, build with your own (`--build-arg UID=$(id -u)`) so the
# container can read a 0600 private key file that `slipway setup` wrote and that is mounted in.
ARG UID=10001

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install from a copy of the sources, then drop them: the image holds only the installed package.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
COPY models ./models
COPY migrations ./migrations
COPY slipway ./slipway
RUN pip install . \
    && rm -rf /src \
    && useradd --system --uid "${UID}" --user-group --home-dir /data --create-home --shell /usr/sbin/nologin slipway

# The working directory is the data folder: the embedded mode's slipway.db and an optional .env live here.
WORKDIR /data
USER slipway

# Listen on every interface inside the container (the default 127.0.0.1 is unreachable from outside).
ENV HOST=0.0.0.0 \
    PORT=3000 \
    LOG_FORMAT=json
EXPOSE 3000

# Liveness for the web process; no curl in the slim image, so Python's urllib does the request.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]

ENTRYPOINT ["slipway"]
CMD ["serve"]
