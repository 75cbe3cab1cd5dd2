# botfleet in a container (docs/deployment.md). Build: docker build -t botfleet .
# Run:  docker run -d --name botfleet --stop-timeout 120 -v botfleet-home:/var/lib/botfleet \
#         -p 8443:8443 -e BOTFLEET_ENCRYPTION_KEY=... -e WEBHOOK_HOST=https://bots.example.com botfleet
# tini is PID 1: it reaps the zombies a crashed handler's children leave, and passes
# SIGTERM/SIGUSR2/SIGHUP to the master (docker's --init does the same).

FROM node:22-slim AS build
WORKDIR /src
# better-sqlite3 builds from source where no prebuilt binary matches.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci
COPY . .
RUN npm run build && npm prune --omit=dev

FROM node:22-slim
RUN apt-get update && apt-get install -y --no-install-recommends tini util-linux && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/botfleet
COPY --from=build /src/package.json /src/package-lock.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# Bot uids pass through the home to their own directory; they must read the code.
RUN chmod -R o+rX /opt/botfleet
ENV NODE_ENV=production \
    BOTFLEET_HOME=/var/lib/botfleet \
    LOG_TO_STDOUT=1 \
    WEBHOOK_PORT=8443
VOLUME ["/var/lib/botfleet"]
EXPOSE 8443
# The status server stays on 127.0.0.1 (read-only, no auth): the check runs inside the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:3001/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/opt/botfleet/dist/cli/main.js"]
CMD ["start"]
