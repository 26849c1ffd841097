# syntax=docker/dockerfile:1
#
# resp-tls-proxy container image.
#
#   docker build -t resp-tls-proxy:0.1.0 .
#
# Runtime contract (README.md, section Deploy):
#   /etc/resp-tls-proxy/config.yaml   the YAML config (mount it read-only)
#   /etc/resp-tls-proxy/tls/          tls.crt, tls.key (and ca.crt for mutual TLS)
#   6380/tcp                          TLS listener (listen.port)
#   9180/tcp                          admin HTTP: /metrics /healthz /readyz (admin.port)
# In a container the config must bind listen.host and admin.host to 0.0.0.0.
# The process writes nothing to disk, so the container runs with a read-only root filesystem.

# ---- build: dev dependencies + TypeScript compile -------------------------------------------
FROM node:26-trixie-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies + dist/ only ------------------------------------------
FROM node:26-trixie-slim AS runtime

# tini as PID 1: forwards SIGTERM/SIGHUP to node and reaps zombies.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

ENV NODE_ENV=production
WORKDIR /app

# Files stay owned by root: the unprivileged user can read them but not change them.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /app/dist ./dist

LABEL org.opencontainers.image.title="resp-tls-proxy" \
      org.opencontainers.image.description="TLS-terminating reverse proxy for the Redis protocol" \
      org.opencontainers.image.licenses="MIT"

# The base image's `node` user (uid/gid 1000), numeric so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000

EXPOSE 6380 9180

# SIGTERM: stop accepting, /readyz -> 503, drain for shutdown.grace_ms, close clients, exit 0.
STOPSIGNAL SIGTERM

# No curl in the slim image: node's own fetch asks the admin server.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node","-e","fetch('http://127.0.0.1:9180/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

ENTRYPOINT ["/usr/bin/tini","--"]
CMD ["node","dist/cli.js","--config","/etc/resp-tls-proxy/config.yaml"]
