# RideFlow's image: one image for every process (`rideflow api`, `dispatcher`, `jobs`, `recorder`,
# `db upgrade`); compose.yaml runs the production shape from it.
# Build: docker build -t rideflow .

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# RideFlow and every dependency as wheels: the runtime stage needs no compiler and no cache.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RIDEFLOW_HOST=0.0.0.0 \
    RIDEFLOW_PORT=8000 \
    RIDEFLOW_DATA_DIR=/var/lib/rideflow
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/rideflow rideflow
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
USER rideflow
WORKDIR /var/lib/rideflow
EXPOSE 8000
# Every process needs Redis; the API's own check (/readyz) is set in compose.yaml.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["rideflow", "check"]
ENTRYPOINT ["rideflow"]
CMD ["api"]
