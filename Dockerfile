FROM python:3.11-slim
RUN useradd --system --create-home hostfit
WORKDIR /opt/hostfit
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY rules ./rules
RUN pip install --no-cache-dir .
USER hostfit
ENV HOSTFIT_HOST=0.0.0.0 HOSTFIT_CACHE_DIR=/home/hostfit/cache
EXPOSE 8080
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz')"
CMD ["hostfit", "serve"]
