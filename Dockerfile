# fleetq image (workers and the board). Build: docker compose build (tags fleetq:local), or docker build -t fleetq .
# Run: see docker-compose.yml. No cocoon inside: restores need the host's, bind-mounted (README, "Docker").
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY workers ./workers
COPY bench ./bench
COPY bin ./bin
RUN npm ci && npm prune --omit=dev

FROM node:20-bookworm-slim
# qemu-img converts raw/old qcow2 bodies; flock (util-linux) guards cocoon's index.
RUN apt-get update \
 && apt-get install -y --no-install-recommends qemu-utils util-linux ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production FLEETQ_ROOT=/var/lib/cocoon
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
VOLUME ["/var/lib/cocoon"]
# The board (fleetq board --port 3000) and a worker's /metrics + /healthz (FLEETQ_METRICS_PORT=9464).
EXPOSE 3000 9464
STOPSIGNAL SIGTERM
# `fleetq …` on PATH for every other command (bin/fleetq.js carries the worker Node flags in its shebang):
#   docker compose run --rm worker-h1 fleetq enqueue …; the board's command is ["fleetq", "board", …].
RUN ln -s /app/bin/fleetq.js /usr/local/bin/fleetq
# The per-host worker (workers/host.worker.ts, configured from the environment; the same code as `fleetq worker`).
# Node flags: none (see src/worker/node-flags.ts)
CMD ["node", "dist/workers/host.worker.js"]
