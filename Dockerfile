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
USER nobody
EXPOSE 8080
CMD ["sh", "-c", "hotline db upgrade && exec hotline serve"]
