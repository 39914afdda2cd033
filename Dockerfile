# kubemonitor image: `make build IMAGE_NAME=... VERSION=...`
# Stage 1 fetches the pinned browser assets (uPlot) from the npm registry, so the
# image serves them itself (no CDN at run time).
FROM node:20-slim AS assets
WORKDIR /src/static
COPY static/package.json static/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KUBEMONITOR_LOG_DIR=/logs/kube-monitoring \
    KUBEMONITOR_USERS_FILE=/etc/kubemonitor/users.yaml
WORKDIR /src
COPY setup.py README.md ./
COPY kubemonitor ./kubemonitor
COPY templates ./templates
COPY static ./static
COPY conf ./conf
COPY --from=assets /src/static/node_modules ./static/node_modules
# A regular (non-editable) install: the package plus templates/, static/ and conf/
# under /usr/local/share/kubemonitor. Then a non-root user owns only the log dir.
RUN pip install --no-cache-dir . \
 && rm -rf /src \
 && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent kubemonitor \
 && mkdir -p /logs/kube-monitoring /etc/kubemonitor \
 && chown kubemonitor /logs/kube-monitoring
WORKDIR /
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
CMD ["kubemonitor", "serve", "8000"]
