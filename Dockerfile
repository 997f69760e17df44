# Lacquer in a container: `docker build -t lacquer .`, then
#   docker run -p 6081:6081 -v $PWD/lacquer.yaml:/etc/lacquer/lacquer.yaml:ro lacquer
# Node runs the TypeScript sources directly (type stripping): no build step, only production dependencies.

# ── stage 1: production dependencies, installed from the lockfile ──
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# ── stage 2: the runtime image ──
FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
COPY deploy/healthcheck.js ./deploy/healthcheck.js
COPY deploy/lacquer.yaml /etc/lacquer/lacquer.yaml
# Non-root: the image's `node` user (uid 1000). Ports above 1024, so no capability is needed.
USER node
EXPOSE 6081 6082
# SIGTERM drains: stop accepting, finish in-flight requests within proxy.drain_timeout, then exit 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["node", "/app/deploy/healthcheck.js", "/healthz"]
ENTRYPOINT ["node", "/app/bin/lacquer.js"]
CMD ["serve", "-c", "/etc/lacquer/lacquer.yaml"]
