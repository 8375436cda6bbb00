# syntax=docker/dockerfile:1
# Build stage: install everything, compile TypeScript.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

# Runtime stage: production dependencies and the build output only, as a non-root user.
FROM node:24-bookworm-slim
ENV NODE_ENV=production
# jemalloc: `serve` preloads it when present (glibc's malloc keeps freed memory resident).
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json gateway.config.schema.json ./
COPY bin ./bin
COPY src/store/migrations ./src/store/migrations
RUN mkdir -p /etc/portcullis /var/lib/portcullis && chown node:node /var/lib/portcullis
COPY gateway.config.yaml /etc/portcullis/gateway.config.yaml
USER node
ENV DATABASE_URL=sqlite:///var/lib/portcullis/portcullis.db
# The embedded store: one SQLite file (and its -wal/-shm) that gateways, workers and the CLI
# share; keep it on a volume so keys and revocations outlive the container.
VOLUME ["/var/lib/portcullis"]
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:9090/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "bin/portcullis.js"]
# One worker per CPU the container may use (its CPU limit counts); the admin listener answers for all.
CMD ["serve", "-c", "/etc/portcullis/gateway.config.yaml", "--workers", "auto"]
