FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hotline ./hotline
COPY devices ./devices
COPY dispatch ./dispatch
COPY simulators ./simulators
RUN pip install --no-cache-dir .
USER nobody
EXPOSE 8080
CMD ["sh", "-c", "hotline db upgrade && exec hotline serve"]
