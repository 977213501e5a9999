# changeseg HTTP service, CPU only. The packaged models (default, pcb, aerial) are inside the
# package, so the image needs no download at run time.
#
#   docker build -t changeseg .
#   docker run --rm -p 8000:8000 -v "$PWD/keys.txt:/run/secrets/changeseg-keys:ro" changeseg \
#       --host 0.0.0.0 --api-key-file /run/secrets/changeseg-keys
#
# Arguments after the image name replace CMD and go to `changeseg serve` (see docs/deploy.md).
# Not built in the project's own CI (that machine has no container engine).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/changeseg
ENV PATH=/opt/changeseg/bin:$PATH
# PyTorch's CPU-only wheels: the default index's Linux wheels bring CUDA (several GB).
# The same pins as the Makefile, repeated when installing the package so pip keeps this build.
ARG TORCH_PINS="torch==2.14.1 torchvision==0.29.1"
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --index-url ${TORCH_INDEX} ${TORCH_PINS}
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# onnx + openvino: `--backend auto` (the default) then serves with OpenVINO, the fastest CPU path.
RUN pip install ".[serve,onnx,openvino]" ${TORCH_PINS} \
    && python -c "import changeseg, pathlib; assert (pathlib.Path(changeseg.__file__).parent / 'weights' / 'default' / 'model.safetensors').is_file()"

FROM ${PYTHON_IMAGE}
COPY --from=build /opt/changeseg /opt/changeseg
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin changeseg \
    && mkdir -p /var/cache/changeseg && chown changeseg /var/cache/changeseg
ENV PATH=/opt/changeseg/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    OMP_WAIT_POLICY=PASSIVE \
    CHANGESEG_CACHE=/var/cache/changeseg
# The ONNX export that OpenVINO compiles is made at first start into CHANGESEG_CACHE (mount a
# volume there to keep it across containers).
USER changeseg
EXPOSE 8000
# /healthz stays open when API keys are set; python is the only HTTP client in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
# SIGTERM (docker stop) lets requests in flight finish; give it as long as --timeout (docker stop -t 70).
STOPSIGNAL SIGTERM
ENTRYPOINT ["changeseg", "serve"]
# Inside a container 127.0.0.1 is unreachable from outside, so listen on every interface;
# without --api-key-file or CHANGESEG_API_KEYS the server warns that it is open to anyone.
CMD ["--host", "0.0.0.0", "--port", "8000", "--model", "default"]
