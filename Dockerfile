# kubemonitor image: `make build IMAGE_NAME=... VERSION=...`
# The chart library is vendored in kubemonitor/static/vendor/ (no npm, no CDN at run time).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KUBEMONITOR_LOG_DIR=/logs/kube-monitoring \
    KUBEMONITOR_USERS_FILE=/etc/kubemonitor/users.yaml
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY kubemonitor ./kubemonitor
# A regular (non-editable) install: kubemonitor/templates, static and conf are its
# package data. Then a non-root user owns only the log dir.
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
