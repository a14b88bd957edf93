# The console is built with Node 18 (Debian 12's own version), then served by the backend.
FROM node:18-bookworm-slim AS console
WORKDIR /src/console
COPY console/package.json console/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY console ./
RUN npx vite build --outDir /out --emptyOutDir

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hotline ./hotline
COPY --from=console /out ./hotline/static/console
COPY devices ./devices
COPY dispatch ./dispatch
COPY simulators ./simulators
RUN pip install --no-cache-dir .
# The broker's password file and ACL (HOTLINE_BROKER_AUTH_DIR): a volume Mosquitto reads.
# Made here, owned by the app's user, so a fresh named volume takes this ownership.
RUN mkdir -p /var/lib/hotline/broker-auth && chown nobody /var/lib/hotline/broker-auth
USER nobody
EXPOSE 8080
CMD ["sh", "-c", "hotline db upgrade && exec hotline serve"]
